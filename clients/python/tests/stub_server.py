"""A scripted HTTP server for behaviour the real server cannot be made to show on demand:
5xx answers, a 202 that always comes back at once, and connection counting for keep-alive."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, List, Set, Tuple

# (method, path) -> (status, body)
Script = Callable[[str, str], Tuple[int, str]]


class StubServer:
    """Answers every request through ``script`` and records what it saw."""

    def __init__(self, script: Script) -> None:
        self.requests: List[Tuple[str, str]] = []
        self.connections: Set[Tuple[str, int]] = set()
        # The Authorization header of every request, "" where there was none.
        self.authorizations: List[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like the real server

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                stub.requests.append((self.command, self.path))
                stub.authorizations.append(self.headers.get("Authorization") or "")
                stub.connections.add(self.client_address)
                status, body = script(self.command, self.path)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "StubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
