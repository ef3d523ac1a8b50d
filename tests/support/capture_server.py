"""A real HTTP server on 127.0.0.1 that records every request: the attacker's end in the key-scope tests.

Issue 12: the operator's Label Studio key went to whatever URL a visitor typed.
The tests point the tab at this server and then read what reached it (method,
path, query, every header, the body), so "the key never left" is checked on the
wire, not inferred. It answers 401 with a JSON body (what a Label Studio says
to a key it does not know), or a redirect when ``redirect_to`` is set, and
stops itself when the ``with`` block ends.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Captured:
    method: str
    path: str  # with the query string
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        heads = "\n".join(f"{k}: {v}" for k, v in self.headers.items())
        return f"{self.method} {self.path}\n{heads}\n\n{self.body.decode('utf-8', 'replace')}"


class CaptureServer:
    """``with CaptureServer() as cap: ... cap.url ... cap.requests``."""

    def __init__(self, redirect_to: str | None = None, status: int = 401) -> None:
        self.requests: list[Captured] = []
        self.redirect_to = redirect_to
        self.status = status
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                owner.requests.append(Captured(self.command, self.path, dict(self.headers.items()), body))
                if owner.redirect_to:
                    self.send_response(307)
                    self.send_header("Location", owner.redirect_to.rstrip("/") + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                payload = json.dumps({"detail": "Invalid token."}).encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

            def log_message(self, *args: object) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> CaptureServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def seen(self, secret: str) -> list[str]:
        """Where ``secret`` showed up in what arrived (empty: nowhere: no header, query or body held it)."""
        return [f"{r.method} {r.path}" for r in self.requests if secret in r.text()]
