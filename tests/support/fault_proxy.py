"""A real HTTP proxy on 127.0.0.1 that forwards to a real server and fails the requests a test picks.

Why a proxy rather than a mocked transport: the code under test keeps its whole
HTTP stack (the SDK, httpx, sockets, timeouts, the SDK's own retries), and the
server behind does the real work. So "the task was created but the answer came
back as a 500", "the answer came too late" or "the server went away" happen
exactly as they would behind a real gateway or with a real overloaded server,
including what the server stored before the failure.

Rules (:meth:`FaultProxy.add`) match on method, a regex over the path, a regex
over the query and which matching request it is (``nth``, 1-based). Actions:

``pass``         forward untouched (with ``hook``: run code first, e.g. delete a project)
``delay``        wait ``delay`` s, then forward: a slow server, the work lands late
``slow_answer``  forward, then hold the answer ``delay`` s: the work is done, the answer is late
``error``        answer ``status`` without forwarding: refused before any work
``error_after``  forward, then answer ``status``: the work is done, the answer is an error
``drop``         close the connection without forwarding or answering
``down``         stop listening (connections refused from now on) and drop this request;
                 :meth:`FaultProxy.start` brings it back on the same port

With ``record=True`` every answer (status, headers, body) is kept in
:attr:`FaultProxy.responses`, used to search all traffic for secrets; the
proxy asks for uncompressed answers so the recorded bodies are searchable.
Answers without a length (server-sent events) are streamed through as they
come. Everything binds to 127.0.0.1; :meth:`FaultProxy.stop` (or leaving the
``with`` block) closes it, and its threads are daemons.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOST = "127.0.0.1"
ACTIONS = ("pass", "delay", "slow_answer", "error", "error_after", "drop", "down")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "accept-encoding"}  # fmt: skip
ERROR_PAGE = b"<html><body><h1>Server Error (500)</h1></body></html>"


@dataclass
class Rule:
    """Which requests fail and how (see the module docstring for the actions)."""

    action: str
    method: str | None = None
    path: str | None = None
    query: str | None = None
    nth: Collection[int] | None = None
    delay: float = 0.0
    status: int = 500
    body: bytes = ERROR_PAGE
    content_type: str = "text/html"
    hook: Callable[[], None] | None = None
    seen: int = 0  # matching requests so far
    fired: int = 0  # of those, the ones the action was applied to

    def matches(self, method: str, path: str, query: str) -> bool:
        return ((self.method is None or self.method == method)
                and (self.path is None or re.search(self.path, path) is not None)
                and (self.query is None or re.search(self.query, query) is not None))  # fmt: skip


@dataclass
class Recorded:
    method: str
    path: str
    status: int
    headers: str
    body: bytes = b""

    def text(self) -> str:
        return self.headers + "\n" + self.body.decode("utf-8", "replace")


@dataclass
class FaultProxy:
    """Forward ``127.0.0.1:<port>`` → ``upstream``, applying the rules; use as a context manager."""

    upstream: str
    record: bool = False
    port: int = 0
    rules: list[Rule] = field(default_factory=list)
    responses: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        parts = urlsplit(self.upstream)
        self.target = (parts.hostname or HOST, parts.port or 80)
        self._server: ThreadingHTTPServer | None = None
        self.lock = threading.Lock()
        self.busy = 0
        self.listening = False

    # ---- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> FaultProxy:
        """Listen (again, on the same port after :meth:`stop`)."""
        if self.listening:
            return self
        server = ThreadingHTTPServer((HOST, self.port), _handler_for(self))
        server.daemon_threads = True
        self._server, self.port, self.listening = server, server.server_address[1], True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                         name=f"fault-proxy-{self.port}").start()  # fmt: skip
        return self

    def stop(self) -> None:
        """Stop listening: new connections are refused, open ones get no answer."""
        server, self._server, self.listening = self._server, None, False
        if server is not None:
            server.shutdown()
            server.server_close()

    # ---- rules ------------------------------------------------------------------------------
    def add(self, action: str, **match: object) -> Rule:
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}")
        rule = Rule(action, **match)  # type: ignore[arg-type]
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()

    def wait_idle(self, timeout: float = 30) -> None:
        """Wait until no request is being forwarded (a delayed one may still be writing on the server)."""
        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not self.busy, "the proxy is still forwarding a request"

    def rule_for(self, method: str, path: str, query: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.matches(method, path, query):
                    rule.seen += 1
                    if rule.nth is None or rule.seen in rule.nth:
                        rule.fired += 1
                        return rule
        return None

    def recorded_text(self) -> str:
        """Every recorded answer (headers and body) as one text, for searching."""
        return "\n".join(r.text() for r in self.responses)


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass  # quiet: the tests read what matters from the rules and the recording

        def _body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _drop(self) -> None:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response_only(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            if proxy.record:
                proxy.responses.append(Recorded(self.command, self.path, status,
                                                "\n".join(f"{k}: {v}" for k, v in headers), body))  # fmt: skip

        def _forward(self, body: bytes, conn: http.client.HTTPConnection) -> http.client.HTTPResponse:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body if body or self.command not in ("GET", "HEAD") else None,
                         headers=headers)  # fmt: skip
            return conn.getresponse()

        def _relay(self, response: http.client.HTTPResponse, delay: float = 0.0) -> None:
            headers = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP | {"content-length"}]
            if response.getheader("Content-Length") is not None or response.status in (204, 304) or \
                    self.command == "HEAD":  # fmt: skip
                body = response.read()
                time.sleep(delay)
                self._answer(response.status, headers, body)
                return
            # no length (server-sent events): stream it through as it comes, then close
            time.sleep(delay)
            self.send_response_only(response.status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            record = Recorded(self.command, self.path, response.status, "\n".join(f"{k}: {v}" for k, v in headers))
            if proxy.record:
                proxy.responses.append(record)
            while chunk := response.read1(65536):
                record.body += chunk
                self.wfile.write(chunk)
                self.wfile.flush()

        def _handle(self) -> None:
            if not proxy.listening:  # a kept-alive connection to a server that went down
                self._drop()
                return
            body = self._body()
            path, _, query = self.path.partition("?")
            rule = proxy.rule_for(self.command, path, query)
            action = rule.action if rule else "pass"
            if rule is not None and rule.hook is not None:
                rule.hook()
            if action == "drop":
                self._drop()
                return
            if action == "down":
                proxy.stop()
                self._drop()
                return
            if action == "error":
                self._answer(rule.status, [("Content-Type", rule.content_type)], rule.body)
                return
            with proxy.lock:
                proxy.busy += 1
            conn = http.client.HTTPConnection(*proxy.target, timeout=300)
            try:
                if action == "delay":
                    time.sleep(rule.delay)
                response = self._forward(body, conn)
                if action == "error_after":
                    response.read()
                    self._answer(rule.status, [("Content-Type", rule.content_type)], rule.body)
                    return
                self._relay(response, rule.delay if action == "slow_answer" else 0.0)
            except (OSError, http.client.HTTPException):
                # the client gave up (its timeout) or the server went away mid-answer: nothing more to relay
                self.close_connection = True
            finally:
                conn.close()
                with proxy.lock:
                    proxy.busy -= 1

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    return Handler
