"""Checks of the docker-compose demo stack (docker-compose.yml at the repository top level).

No Docker engine is needed: the file is validated against the Compose specification's JSON
schema (shared schemas folder next to the repository; skipped with a message only when that
folder is absent) and by ``docker-compose config -q`` (Debian package ``docker-compose``;
missing, the test fails).
"""

from __future__ import annotations

import json
import posixpath
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "schemas"
COMPOSE = REPO / "docker-compose.yml"
PROMETHEUS_DIR = REPO / "dashboards" / "prometheus"
GRAFANA_DIR = REPO / "dashboards" / "grafana"

REQUIRED_SERVICES = {"demo", "prometheus", "grafana", "jaeger", "minio", "minio-init"}
# service -> container ports it must publish (on 127.0.0.1).
REQUIRED_PORTS = {
    "demo": {8000},
    "prometheus": {9090},
    "grafana": {3000},
    "jaeger": {16686, 4318},
    "minio": {9000, 9001},
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    services: dict[str, Any] = compose["services"]
    return services


def _command_text(service: dict[str, Any], key: str = "command") -> str:
    value = service.get(key, "")
    return " ".join(value) if isinstance(value, list) else str(value)


def _bind_mounts(service: dict[str, Any]) -> list[tuple[Path, PurePosixPath]]:
    """(host path, container path) of the service's bind mounts; named volumes are left out."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") != "bind":
                continue
            source, target = volume["source"], volume["target"]
        else:
            source, target = volume.split(":")[:2]
        if not source.startswith((".", "/")):
            continue  # a named volume
        mounts.append(((REPO / source).resolve(), PurePosixPath(target)))
    return mounts


def _container_path(service: dict[str, Any], host_path: Path) -> PurePosixPath | None:
    """Where ``host_path`` appears in the container, through the most specific bind mount."""
    best: tuple[int, PurePosixPath] | None = None
    host_path = host_path.resolve()
    for source, target in _bind_mounts(service):
        if host_path == source or source in host_path.parents:
            inside = target.joinpath(*host_path.relative_to(source).parts)
            if best is None or len(source.parts) > best[0]:
                best = (len(source.parts), inside)
    return None if best is None else best[1]


def _published_ports(service: dict[str, Any]) -> list[tuple[str | None, int]]:
    """(host ip, container port) for each published port."""
    out: list[tuple[str | None, int]] = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((port.get("host_ip"), int(port["target"])))
            continue
        spec = str(port).split("/")[0]
        match = re.fullmatch(r"(?:(\[[^\]]+\]|[^:]+):)?(?:(\d+(?:-\d+)?):)?(\d+(?:-\d+)?)", spec)
        assert match, f"cannot parse port {port!r}"
        host_ip, host_port, container_port = match.groups()
        if host_port is None and host_ip is not None and host_ip.isdigit():
            host_ip = None  # "HOST:CONTAINER" form: no ip
        out.append((host_ip, int(container_port.split("-")[0])))
    return out


# ------------------------------------------------------------------------ validation


def test_compose_validates_against_the_compose_spec(compose: dict[str, Any]) -> None:
    if not SCHEMAS.is_dir():
        pytest.skip(
            f"shared schemas folder {SCHEMAS} is absent: the Compose specification schema "
            "is not available in this checkout, so schema validation cannot run"
        )
    from jsonschema import Draft7Validator

    schema = json.loads((SCHEMAS / "compose-spec.json").read_text(encoding="utf-8"))
    errors = list(Draft7Validator(schema).iter_errors(compose))
    messages = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
    assert not messages, "docker-compose.yml does not validate:\n" + "\n".join(messages)


def test_docker_compose_config(tmp_path: Path) -> None:
    docker_compose = shutil.which("docker-compose")
    if docker_compose is None:
        pytest.fail(
            "docker-compose not found on PATH: install Debian's docker-compose package "
            "(apt-get install docker-compose) to check docker-compose.yml"
        )
    result = subprocess.run(
        [docker_compose, "-f", str(COMPOSE), "config", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        # No Docker engine here: keep docker-compose from looking for one or for a
        # user's configuration.
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_top_level_name(compose: dict[str, Any]) -> None:
    # Debian's docker-compose (1.29) rejects it; the project name comes from the folder.
    assert "name" not in compose


# -------------------------------------------------------------------------- services


def test_required_services(services: dict[str, Any]) -> None:
    missing = REQUIRED_SERVICES - set(services)
    assert not missing, f"missing services: {sorted(missing)}"
    images = {name: service.get("image", "") for name, service in services.items()}
    assert images["demo"] == "vcti-file-cache-demo:latest"  # built from the Dockerfile
    assert re.match(r"(docker\.io/)?prom/prometheus(:|$)", images["prometheus"])
    assert re.match(r"(docker\.io/)?grafana/grafana(:|$)", images["grafana"])
    assert re.match(r"(docker\.io/)?jaegertracing/all-in-one(:|$)", images["jaeger"])
    assert re.match(r"([a-z.]+/)?minio/minio(:|$)", images["minio"])
    assert re.match(r"([a-z.]+/)?minio/mc(:|$)", images["minio-init"])


def test_every_port_is_bound_to_localhost(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for host_ip, container_port in _published_ports(service):
            assert host_ip == "127.0.0.1", f"{name} publishes {container_port} on {host_ip}"
        assert "network_mode" not in service or service["network_mode"] != "host", name


def test_required_ports_are_published(services: dict[str, Any]) -> None:
    for name, ports in REQUIRED_PORTS.items():
        published = {port for _, port in _published_ports(services[name])}
        assert ports <= published, f"{name} publishes {published}, needs {ports}"


def test_demo_service(services: dict[str, Any]) -> None:
    demo = services["demo"]
    # Built once from the Dockerfile: a start installs nothing, and mounts no checkout.
    assert demo["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert "pip" not in _command_text(demo)
    assert "volumes" not in demo
    assert "entrypoint" not in demo  # the image's: filecache
    command = demo["command"]
    assert isinstance(command, list), "exec form: no shell between tini and the demo"
    assert command[:3] == ["demo", "--host", "0.0.0.0"]
    # Listens on the port Prometheus scrapes (default 8000 when --port is not given).
    port = re.search(r"--port[ =](\d+)", " ".join(command))
    assert (int(port.group(1)) if port else 8000) == 8000
    environment = demo["environment"]
    assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"


def _dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, (INSTRUCTION, arguments), continuations joined."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in text.splitlines()]
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.partition(" ") for line in lines if line and line[0] != "#")
    ]


def test_the_dockerfile_installs_everything_at_build_time() -> None:
    instructions = _dockerfile()
    assert instructions[0] == ("FROM", "python:3.12-slim")
    runs = [args for word, args in instructions if word == "RUN"]
    assert any(re.search(r"pip install \"\.\[demo,s3\]\"", run) for run in runs), runs
    copied = [args.split()[:-1] for word, args in instructions if word == "COPY"]
    assert sorted(source for sources in copied for source in sources) == [
        "README.md",
        "pyproject.toml",
        "src",
    ]
    assert ("USER", "filecache") in instructions  # the demo runs as no root
    entrypoint = dict(instructions)["ENTRYPOINT"]
    assert json.loads(entrypoint) == ["filecache"]  # exec form: the signals reach it
    assert dict(instructions)["STOPSIGNAL"] == "SIGTERM"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` out of the build context (last matching rule wins).

    A rule matches a path or any folder above it; ``*`` stays within one path component,
    ``**`` spans any number; ``!`` re-includes.
    """
    parts = path.split("/")
    ignored = False
    for pattern in patterns:
        exception = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        regex = re.escape(glob).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        regex = regex.replace(r"\[", "[").replace(r"\]", "]")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            ignored = not exception
    return ignored


def test_dockerignore_sends_only_what_the_install_needs(tmp_path: Path) -> None:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    # What a checkout holds after the README's own first commands, and what the build needs.
    left_out = [
        ".venv/lib/python3.12/site-packages/boto3/__init__.py",
        "build/lib/vcti/filecache/__init__.py",
        "dist/vcti_file_cache-2.0.0.tar.gz",
        ".git/HEAD",
        ".mypy_cache/3.12/cache.db",
        ".ruff_cache/0.4/x",
        ".pytest_cache/v/cache/lastfailed",
        ".hypothesis/examples/x",
        "htmlcov/index.html",
        ".coverage",
        "benchmarks/results/run.json",
        "tests/test_cache.py",
        "src/vcti/filecache/__pycache__/_cache.cpython-312.pyc",
        "src/vcti_file_cache.egg-info/PKG-INFO",
    ]
    for path in left_out:
        assert _ignored(path, patterns), f"{path} would be sent to the build"
    tracked = subprocess.run(
        ["git", "ls-files", "--", "src", "pyproject.toml", "README.md"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert "src/vcti/filecache/cli/__init__.py" in tracked
    sent = [path for path in tracked if not _ignored(path, patterns)]
    assert sent == tracked, f"needed by the build, left out: {sorted(set(tracked) - set(sent))}"
    assert _ignored(".venv", patterns)
    assert not _ignored("src", patterns)


def _seconds(duration: str) -> float:
    """A Compose duration (``1m30s``, ``45s``, ``500ms``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts, f"not a duration: {duration!r}"
    assert "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def test_the_demo_gets_the_stop_signal_and_time_to_clean_up(services: dict[str, Any]) -> None:
    demo = services["demo"]
    # Not PID 1 (which ignores SIGTERM without a handler and reaps no children): an init.
    assert demo.get("init") is True
    # SIGTERM (the default) is what the demo stops cleanly on, with status 0.
    assert demo.get("stop_signal", "SIGTERM") == "SIGTERM"
    # No shell in between: the image's exec-form entrypoint runs filecache under tini.
    assert isinstance(demo["command"], list)
    # Time to stop the load and the server, close the cache and remove the work folder
    # (Docker's default is 10 s).
    assert _seconds(str(demo.get("stop_grace_period", "10s"))) >= 20


def test_jaeger_accepts_otlp(services: dict[str, Any]) -> None:
    assert str(services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"]).lower() == "true"


def test_minio_has_a_console_and_the_bucket_is_created(services: dict[str, Any]) -> None:
    assert "--console-address" in _command_text(services["minio"])
    init = services["minio-init"]
    script = _command_text(init, "entrypoint") + " " + _command_text(init)
    assert re.search(r"mc mb\b.*\bsim-cache\b", script), script
    assert "minio" in init.get("depends_on", [])
    assert init.get("restart", "no") == "no", "minio-init is a one-shot job"


# ------------------------------------------------------------------------ prometheus


def test_prometheus_mounts_its_config_and_alerts(services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    config_inside = _container_path(prometheus, PROMETHEUS_DIR / "prometheus.yml")
    alerts_inside = _container_path(prometheus, PROMETHEUS_DIR / "alerts.yml")
    assert config_inside is not None, "prometheus.yml is not mounted into prometheus"
    assert alerts_inside is not None, "alerts.yml is not mounted into prometheus"
    flag = re.search(r"--config\.file[ =](\S+)", _command_text(prometheus))
    # prom/prometheus's default command reads /etc/prometheus/prometheus.yml.
    config_file = flag.group(1) if flag else "/etc/prometheus/prometheus.yml"
    assert str(config_inside) == config_file
    # rule_files are resolved relative to the configuration file.
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    rule_paths = {
        posixpath.normpath(posixpath.join(posixpath.dirname(config_file), rule))
        for rule in config["rule_files"]
    }
    assert str(alerts_inside) in rule_paths


def test_prometheus_scrapes_the_demo_service(services: dict[str, Any]) -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    assert "demo:8000" in targets
    assert "demo" in services


# --------------------------------------------------------------------------- grafana


def test_grafana_mounts_provisioning_and_the_dashboard(services: dict[str, Any]) -> None:
    grafana = services["grafana"]
    provisioning = GRAFANA_DIR / "provisioning"
    for kind, file in (("datasources", "prometheus.yml"), ("dashboards", "filecache.yml")):
        inside = _container_path(grafana, provisioning / kind / file)
        assert inside == PurePosixPath("/etc/grafana/provisioning", kind, file), (
            f"{kind} provisioning is mounted at {inside}"
        )
    dashboard_inside = _container_path(grafana, GRAFANA_DIR / "filecache.json")
    assert dashboard_inside is not None, "filecache.json is not mounted into grafana"
    providers = yaml.safe_load((provisioning / "dashboards" / "filecache.yml").read_text())
    paths = {PurePosixPath(p["options"]["path"]) for p in providers["providers"]}
    assert dashboard_inside.parent in paths, (
        f"the dashboard is mounted at {dashboard_inside}, the provider reads {paths}"
    )


def test_grafana_anonymous_admin(services: dict[str, Any]) -> None:
    environment = services["grafana"]["environment"]
    assert str(environment["GF_AUTH_ANONYMOUS_ENABLED"]).lower() == "true"
    assert environment["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Admin"


def test_grafana_datasource_points_at_the_prometheus_service(services: dict[str, Any]) -> None:
    provisioned = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    urls = {d["url"] for d in provisioned["datasources"] if d["type"] == "prometheus"}
    assert urls == {"http://prometheus:9090"}
    assert 9090 in {port for _, port in _published_ports(services["prometheus"])}
