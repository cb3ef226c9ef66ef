"""`release-capsule serve` as a process on a free loopback port, for the
tests that talk to it (test_serve.py, test_signing.py; the `serve` fixture is
in conftest.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from harness import free_port


class Server:
    """`release-capsule serve` on a free loopback port."""

    def __init__(self, binary: Path, *args: str, env: dict[str, str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([str(binary), "serve", "--listen", f"127.0.0.1:{self.port}", *args],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.get("/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"serve did not start: {self.proc.returncode}\n{self.stderr}")
            time.sleep(0.05)

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.poll() is not None else ""

    def logs(self, *, path: str | None = None, at_least: int = 0, timeout: float = 10) -> list[dict]:
        """The server's JSON log lines, only those for ``path`` when given.

        A line reaches us through the reader thread some time after the answer
        it describes (later still on a busy machine): wait until ``at_least``
        of them are there, or, once the server has exited, until all are read.
        """
        deadline = time.monotonic() + timeout
        while True:
            exited = self.proc.poll() is not None
            if exited:
                self._reader.join(timeout=max(0.0, deadline - time.monotonic()))
            entries = [json.loads(l) for l in list(self.lines) if l.startswith("{")]
            if path is not None:
                entries = [e for e in entries if e.get("path") == path]
            if len(entries) >= at_least or exited or time.monotonic() > deadline:
                return entries
            time.sleep(0.02)

    def request(self, method: str, path: str, body: bytes | None = None, timeout: float = 60) -> tuple[int, bytes, dict]:
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers={"Content-Type": "application/json"} if body is not None else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}
        except urllib.error.HTTPError as e:
            return e.code, e.read(), {k.lower(): v for k, v in e.headers.items()}

    def get(self, path: str):
        return self.request("GET", path, timeout=5)

    def verify(self, body: bytes) -> tuple[int, dict]:
        status, raw, headers = self.request("POST", "/verify", body)
        assert headers.get("content-type", "").startswith("application/json"), headers
        return status, json.loads(raw)

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
