"""A fault-injecting HTTP reverse proxy to put in front of a registry.

    with FaultProxy(registry.host, fault_rate=0.3, drop_rate=0.1, seed=7) as proxy:
        run_cli(["publish", "--capsule-repo", f"{proxy.host}/x", ...])
        assert proxy.faults_injected > 0

Faults are decided BEFORE forwarding, so the upstream never sees a faulted
request: a retried upload PATCH is the client's first PATCH as far as the
registry knows. Two kinds are the exception, as they are about the answer: a
"cut" GET is forwarded and its answer broken off mid-body, and a "stall"
waits ``stall_seconds`` before it is forwarded (a registry that hangs).
Decisions come from a seeded ``random.Random``, so a run is reproducible as
long as the client's request order is.

Fault kinds, as ``faults_by_kind()`` counts them: "503", "429" (these two
with JSON error bodies and maybe Retry-After), "502-html" (an HTML page, as a
load balancer in front of a registry answers), "reset" (RST), "close" (FIN, no
answer), "cut", "stall", "always".

Everything else is forwarded as-is: method, path, query, headers (including
Authorization), and the body, streamed in both directions (chunked request
bodies are decoded and re-chunked). ``Location`` headers that point at the
upstream are rewritten to point at the proxy; ``WWW-Authenticate`` passes
through untouched.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

from . import BackgroundServer, QuietHandler

# Per RFC 9110 7.6.1, plus Host (we set our own) and Expect (http.server has
# already answered "100 Continue" to the client).
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "host", "expect", "proxy-connection",
}

# Error bodies shaped like the distribution spec's, so clients parse them.
_FAULT_BODIES = {
    503: {"errors": [{"code": "UNAVAILABLE", "message": "fault injected by test proxy"}]},
    429: {"errors": [{"code": "TOOMANYREQUESTS", "message": "fault injected by test proxy"}]},
}
# What a load balancer in front of a registry answers instead: HTML.
_HTML_502 = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
             b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")

_DROPS = ("drop-close", "drop-reset")


def _chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk (b"" gives the last-chunk marker)."""
    return b"%X\r\n%s\r\n" % (len(data), data)


@dataclass
class ProxyLogEntry:
    method: str
    path: str  # without the query
    query: str
    status: int | None  # None: connection dropped, no response
    fault: str | None  # None (forwarded), "status", "drop-close", "drop-reset", "cut", "stall", "always"
    retry_after: str | None = None
    time: float = field(default_factory=time.time)


class _ProxyHandler(QuietHandler):
    server_version = "rc-fault-proxy"

    def _handle(self) -> None:
        proxy: FaultProxy = self.server.owner
        path, _, query = self.path.partition("?")
        entry = proxy._decide(self.command, path, query)

        if entry.fault in _DROPS:
            self._drop(reset=entry.fault == "drop-reset")
            return

        if entry.fault in ("status", "always"):
            # Drain the body first: closing a socket with unread data makes the
            # kernel send RST, and the client would see a reset instead of our 503.
            for _ in self.iter_body():
                pass
            headers = {"Connection": "close"}
            if entry.retry_after is not None:
                headers["Retry-After"] = entry.retry_after
            self.close_connection = True
            head = self.command == "HEAD"
            if entry.status == 502:
                self.send_bytes(502, _HTML_502, "text/html", headers=headers, head=head)
            else:
                body = json.dumps(_FAULT_BODIES.get(entry.status, _FAULT_BODIES[503])).encode()
                self.send_bytes(entry.status, body, headers=headers, head=head)
            return

        if entry.fault == "stall":
            time.sleep(proxy.stall_seconds)  # a registry that hangs, then answers after all
        if proxy.delay and (proxy.delay_when is None or proxy.delay_when(self.command, path)):
            time.sleep(proxy.delay)  # a slow link: the request waits before it is forwarded
        self._forward(proxy, entry)

    def _drop(self, *, reset: bool) -> None:
        self.close_connection = True
        if reset:
            # SO_LINGER with a zero timeout turns close() into an RST.
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            self.connection.close()
        else:
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _forward(self, proxy: FaultProxy, entry: ProxyLogEntry) -> None:
        """Relay the request; ``entry.status`` is set before the client hears back,
        so a test that reads the log right after its response sees it."""
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP]
        headers.append(("Host", proxy.upstream_host))
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        has_length = self.headers.get("Content-Length") is not None and not chunked
        body = self.iter_body() if (chunked or has_length) else None

        conn = http.client.HTTPConnection(proxy.upstream_host, timeout=proxy.upstream_timeout)
        try:
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in headers:
                    conn.putheader(k, v)
                if chunked:
                    conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                if body is not None:
                    for piece in body:
                        conn.send(_chunk(piece) if chunked else piece)
                    if chunked:
                        conn.send(_chunk(b""))
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                msg = json.dumps({"errors": [{"code": "UNKNOWN", "message": f"proxy: upstream failed: {e}"}]})
                self.close_connection = True
                entry.status = 502
                self.send_bytes(502, msg.encode(), headers={"Connection": "close"})
                return

            entry.status = resp.status
            self.send_response(resp.status, resp.reason)
            length = resp.getheader("Content-Length")
            for k, v in resp.getheaders():
                lk = k.lower()
                if lk in _HOP_BY_HOP or lk == "content-length":
                    continue
                if lk == "location":
                    v = proxy.rewrite_location(v)
                self.send_header(k, v)
            no_body = self.command == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
            if length is not None:
                self.send_header("Content-Length", length)
            elif not no_body:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if entry.fault == "cut" and not no_body:
                # Half the body, then the connection ends.
                data = resp.read()
                part = data[: len(data) // 2]
                if part:
                    self.wfile.write(part if length is not None else _chunk(part))
                self.wfile.flush()
                self._drop(reset=False)
                return
            if not no_body:
                while True:
                    data = resp.read1(64 * 1024) if length is None else resp.read(64 * 1024)
                    if not data:
                        break
                    self.wfile.write(data if length is not None else _chunk(data))
                if length is None:
                    self.wfile.write(_chunk(b""))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            conn.close()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle


class FaultProxy(BackgroundServer):
    """Reverse proxy on 127.0.0.1:<random> in front of ``upstream``.

    Args:
        upstream: "127.0.0.1:PORT" or "http://127.0.0.1:PORT".
        fault_rate: fraction of requests answered with a status from
            ``fault_statuses`` (503/429), some with ``Retry-After``.
        drop_rate: fraction of requests whose connection is dropped without an
            answer (half closed cleanly with FIN, half reset with RST).
        seed: seed of the ``random.Random`` making the decisions.
        always_fail: answer every request 503 (nothing is forwarded).
        should_fault: optional ``(method, path) -> bool``; requests for which
            it returns False are always forwarded (e.g. fault only PATCHes).
        max_faults: stop injecting after this many faults (None: no cap).
        delay: seconds every forwarded request waits first (a slow link);
            ``delay_when(method, path) -> bool`` limits it to some requests.
        cut_rate: fraction of GET requests forwarded whose answer is broken
            off mid-body (other methods roll the same, but are forwarded whole).
        stall_rate: fraction of requests held ``stall_seconds`` before they
            are forwarded.
        fault_statuses: what a status fault answers; 502 is sent as HTML.

    All of these are plain attributes and may be changed while running.
    Counters (derived from ``log``, the per-request list of ProxyLogEntry):
    ``requests_seen``, ``faults_injected`` (including drops), ``drops``,
    ``forwarded``.
    """

    handler_class = _ProxyHandler

    def __init__(
        self,
        upstream: str,
        *,
        fault_rate: float = 0.0,
        drop_rate: float = 0.0,
        seed: int = 0,
        always_fail: bool = False,
        fault_statuses: tuple[int, ...] = (503, 429),
        retry_after_choices: tuple[str | None, ...] = (None, "0", "1"),
        should_fault: Callable[[str, str], bool] | None = None,
        max_faults: int | None = None,
        upstream_timeout: float = 60.0,
        delay: float = 0.0,
        delay_when: Callable[[str, str], bool] | None = None,
        cut_rate: float = 0.0,
        stall_rate: float = 0.0,
        stall_seconds: float = 30.0,
    ) -> None:
        parsed = urlsplit(upstream if "://" in upstream else f"http://{upstream}")
        if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"upstream must be loopback, got {upstream!r}")
        self.upstream_host = parsed.netloc
        self.upstream_url = f"http://{parsed.netloc}"
        self.fault_rate = fault_rate
        self.drop_rate = drop_rate
        self.always_fail = always_fail
        self.fault_statuses = fault_statuses
        self.retry_after_choices = retry_after_choices
        self.should_fault = should_fault
        self.max_faults = max_faults
        self.upstream_timeout = upstream_timeout
        self.delay = delay
        self.delay_when = delay_when
        self.cut_rate = cut_rate
        self.stall_rate = stall_rate
        self.stall_seconds = stall_seconds
        self.rng = random.Random(seed)
        self._lock = threading.Lock()
        self.log: list[ProxyLogEntry] = []  # arrival order; counters derive from it
        super().__init__()

    def reset(self) -> None:
        """Clear the log, and so the counters (the random stream continues)."""
        with self._lock:
            self.log.clear()

    @property
    def requests_seen(self) -> int:
        return len(self.log)

    @property
    def faults_injected(self) -> int:
        """Requests not forwarded: injected statuses and dropped connections."""
        return sum(1 for e in self.log if e.fault is not None)

    @property
    def drops(self) -> int:
        return sum(1 for e in self.log if e.fault in _DROPS)

    @property
    def forwarded(self) -> int:
        return self.requests_seen - self.faults_injected

    def faults_by_kind(self) -> dict[str, int]:
        """Faults injected, by kind: "503", "429", "502-html", "reset", "close", "cut", "stall", "always"."""
        out: dict[str, int] = {}
        with self._lock:
            for e in self.log:
                if e.fault is None:
                    continue
                kind = {"drop-reset": "reset", "drop-close": "close"}.get(e.fault, e.fault)
                if e.fault == "status":
                    kind = "502-html" if e.status == 502 else str(e.status)
                out[kind] = out.get(kind, 0) + 1
        return out

    def entries(self, method: str | None = None, path_contains: str = "") -> list[ProxyLogEntry]:
        with self._lock:
            return [
                e for e in self.log
                if (method is None or e.method == method) and path_contains in e.path
            ]

    # Decide under the lock so counters, log order and the random stream stay
    # consistent when the client sends requests in parallel. The log entry is
    # appended now (arrival order); the handler fills in the status later.
    def _decide(self, method: str, path: str, query: str) -> ProxyLogEntry:
        entry = ProxyLogEntry(method, path, query, None, None)
        with self._lock:
            capped = self.max_faults is not None and self.faults_injected >= self.max_faults
            self.log.append(entry)
            if self.always_fail:
                entry.fault, entry.status = "always", 503
                return entry
            eligible = self.should_fault is None or self.should_fault(method, path)
            # One roll per request, eligible or not: the sequence stays the same
            # for a given request order whatever should_fault says.
            roll = self.rng.random()
            if not eligible or capped:
                return entry
            if roll < self.drop_rate:
                entry.fault = self.rng.choice(_DROPS)
            elif roll < self.drop_rate + self.fault_rate:
                entry.fault = "status"
                entry.status = self.rng.choice(self.fault_statuses)
                entry.retry_after = self.rng.choice(self.retry_after_choices)
            elif roll < self.drop_rate + self.fault_rate + self.cut_rate:
                entry.fault = "cut" if method == "GET" else None
            elif roll < self.drop_rate + self.fault_rate + self.cut_rate + self.stall_rate:
                entry.fault = "stall"
            return entry

    def rewrite_location(self, value: str) -> str:
        for prefix in (self.upstream_url, f"https://{self.upstream_host}"):
            if value.startswith(prefix):
                return self.url + value[len(prefix):]
        return value

