"""Test harness for release-capsule's integration tests.

Modules (import them directly; this package does not re-export them):

- ``harness.registry``: a real CNCF distribution (``docker-registry``) per test
  session, plus a tiny stdlib OCI client to seed and read registries.
- ``harness.fault_proxy``: an HTTP reverse proxy that injects 503/429 answers and
  dropped connections in front of a registry.
- ``harness.evil_registry``: a fake registry that serves whatever a test gives it
  (wrong digests, malicious layers) and builders for capsule archives/manifests.
- ``harness.fake_github``: a fake GitHub REST API that validates request bodies
  against GitHub's own JSON schemas.

This module holds the small pieces the stdlib servers share. Everything binds to
127.0.0.1 only: the harness must never listen on, or talk to, another address.
"""

from __future__ import annotations

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

LOOPBACK = "127.0.0.1"

# tests/py/harness/__init__.py -> repo root is three levels up.
REPO_ROOT = Path(__file__).resolve().parents[3]
# Shared, read-only material lives beside the checkout (see ../shared/README.md).
SHARED_DIR = REPO_ROOT.parent / "shared"


def free_port() -> int:
    """A port that was free a moment ago, for servers we cannot hand a socket to.

    There is an unavoidable race between closing this socket and the child
    process binding the port; callers that start external servers retry.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class _TrackingServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that remembers its open connections.

    With HTTP/1.1 keep-alive, handler threads sit on idle client connections;
    ``shutdown()`` alone leaves them running. Tracking the sockets lets
    ``close()`` cut them so no thread outlives the server for long.
    """

    daemon_threads = True
    # Tests start many servers in quick succession on fresh ports; no lingering.
    allow_reuse_address = True

    def __init__(self, addr, handler, owner):
        self.owner = owner  # handlers reach their fake's state via self.server.owner
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, handler)

    def process_request(self, request, client_address):
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        # A client that hung up (a cancelled run, a test's own timeout) is
        # expected here; anything else is still printed.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)

    def cut_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class BackgroundServer:
    """Runs a stdlib HTTP server on 127.0.0.1:<random port> in a daemon thread.

    Subclasses set ``handler_class``; the handler finds the subclass instance as
    ``self.server.owner``. Usable as a context manager.
    """

    handler_class: type[BaseHTTPRequestHandler]

    def __init__(self) -> None:
        # Port 0: the kernel picks a free port and we keep the socket, so no race.
        self._httpd = _TrackingServer((LOOPBACK, 0), self.handler_class, self)
        self.port: int = self._httpd.server_address[1]
        self.host = f"{LOOPBACK}:{self.port}"
        self.url = f"http://{self.host}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.cut_connections()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class QuietHandler(BaseHTTPRequestHandler):
    """Request handler base: HTTP/1.1, no stderr noise, body helpers."""

    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections are closed after this many seconds.
    timeout = 30

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    def iter_body(self, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        """Yield the request body, decoding ``Transfer-Encoding: chunked``.

        http.server does not decode chunked request bodies itself, and HTTP
        clients (Go's, Rust's reqwest for streamed bodies) send them, so every
        fake must.
        """
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("client closed the connection mid-body")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # Skip optional trailers up to the blank line.
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                remaining = size
                while remaining:
                    data = self.rfile.read(min(remaining, chunk_size))
                    if not data:
                        raise ConnectionError("client closed the connection mid-chunk")
                    remaining -= len(data)
                    yield data
                self.rfile.readline(3)  # CRLF after each chunk
            return
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining:
            data = self.rfile.read(min(remaining, chunk_size))
            if not data:
                raise ConnectionError("client closed the connection mid-body")
            remaining -= len(data)
            yield data

    def read_body(self) -> bytes:
        return b"".join(self.iter_body())

    def send_bytes(
        self,
        status: int,
        body: bytes = b"",
        content_type: str | None = "application/json",
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
        *,
        head: bool = False,
    ) -> None:
        """Send a complete response; ``head=True`` sends headers only (HEAD)."""
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        items = headers.items() if isinstance(headers, dict) else (headers or [])
        for k, v in items:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)
