"""moto's S3 server on 127.0.0.1, in a process of its own: ``python -m tests.storage.moto_server``.

It prints its URL on the first line of stdout, then serves until its stdin is closed (the
test process that started it ended, however it ended) or it is terminated.

With ``--dialect``, it stands in for a server that differs from S3: ``no-if-none-match``
and ``no-if-match`` ignore that header of a request (as servers without conditional
writes do), ``bare-if-match`` compares ``If-Match`` with the ETag without its quotes, as
Ceph's gateway 16 does (a quoted one never matches).

A process of its own, not a thread of the test process: the tests' requests are then
served in parallel with the tests' own work, and the server's code is not slowed down by
the coverage tracer of the test process (it is moto's code, not the project's).
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from typing import Any


class MotoServer:
    """moto's S3 server on a free port of 127.0.0.1, deciding one request at a time.

    This is what ``moto.server.ThreadedMotoServer`` runs, with one change: moto checks
    the precondition of a conditional write (``IfMatch``, ``IfNoneMatch``) and then
    writes, without a lock, so two concurrent conditional writes to one key can both
    succeed. S3 decides them atomically, and the lease and merged-count tests rely on
    that, so requests are decided one at a time here. Each request's body is read before
    its turn: a client stopped (SIGSTOP) in the middle of sending one must not hold up
    every other client, as it would not on S3.
    """

    def __init__(self, dialect: str = "") -> None:
        from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def serial(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            if dialect == "no-if-none-match":
                environ.pop("HTTP_IF_NONE_MATCH", None)
            elif dialect == "no-if-match":
                environ.pop("HTTP_IF_MATCH", None)
            elif dialect == "bare-if-match" and "HTTP_IF_MATCH" in environ:
                etag = environ["HTTP_IF_MATCH"]
                environ["HTTP_IF_MATCH"] = f'"{etag}"' if '"' not in etag else "quoted"
            length = int(environ.get("CONTENT_LENGTH") or 0)
            environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(length))
            with lock:
                return list(app(environ, start_response))

        self._server = make_server(
            "127.0.0.1", 0, serial, threaded=True, request_handler=MotoRequestHandler
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def serve_until_stdin_closes(self) -> None:
        """Serve requests until stdin reaches its end."""

        def watch() -> None:
            sys.stdin.read()
            self._server.shutdown()

        threading.Thread(target=watch, daemon=True).start()
        self._server.serve_forever()


def main() -> None:
    # werkzeug logs every request at INFO; keep the server's log to what went wrong.
    logging.basicConfig(level=logging.WARNING)
    dialect = sys.argv[2] if sys.argv[1:2] == ["--dialect"] else ""
    server = MotoServer(dialect)
    print(server.url, flush=True)
    server.serve_until_stdin_closes()


if __name__ == "__main__":
    main()
