# The image of the demo service of docker-compose.yml: vcti-file-cache with its demo
# extra (the OpenTelemetry SDK and OTLP exporter) and s3 extra (boto3), installed once at
# build time, so that the container installs nothing when it starts or restarts.
#
#   docker compose build demo      (or: docker build -t vcti-file-cache-demo .)
#
# .dockerignore sends only what the install needs (pyproject.toml, README.md, src/).
FROM python:3.12-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[demo,s3]" \
    && rm -rf /build \
    && useradd --create-home --uid 10001 filecache

# The demo's work folder (inputs, a local cache) goes to the user's temporary folder.
USER filecache
WORKDIR /home/filecache
EXPOSE 8000
# tini (compose's init: true) passes SIGTERM on to filecache, which stops cleanly on it.
STOPSIGNAL SIGTERM
ENTRYPOINT ["filecache"]
CMD ["demo", "--host", "0.0.0.0", "--port", "8000"]
