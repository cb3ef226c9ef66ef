"""`release-capsule serve` as a process on a free loopback port, for the
tests that talk to it (test_serve*.py, test_signing.py; the `serve` fixture is
in conftest.py), and the requests those tests send: the stage's body
(``stage_body``) and the small form (``small_body``)."""

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
from kargo_http import HttpStep
from verify_support import SHA, TAG, World


class Server:
    """`release-capsule serve` on a free loopback port."""

    def __init__(self, binary: Path | None, *args: str, env: dict[str, str], command: list[str] | None = None,
                 preexec_fn=None):
        """``command``: what runs the binary in place of ``binary`` itself (the
        container tests: ``podman run ... <image>``, whose entrypoint it is)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([*(command or [str(binary)]), "serve", "--listen", f"127.0.0.1:{self.port}", *args],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=preexec_fn)
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

    def stop(self, sig=signal.SIGINT) -> int:
        """Stops the service: SIGINT by default, which skips the drain (SIGTERM's
        takes --drain-seconds)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


# -- what the stage sends, and the worlds the service tests share ---------------------

STEP = HttpStep.load()
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kargo"
KUSTOMIZATION = b"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - base\n"


def stage_body(world: World, capsule_repo: str | None = None, *, release: dict | None = None, image_digest: str | None = None) -> bytes:
    """The body the Kustomize stage's http step sends for this world's release."""
    capsule_repo = capsule_repo or world.capsule
    step = HttpStep(STEP.config, {**STEP.vars, "imageRepo": world.image, "capsuleRepo": capsule_repo})
    images = {world.image: {"RepoURL": world.image, "Tag": TAG, "Digest": image_digest or world.image_digest}}
    parsed = {
        "gitCommit": SHA, "imageRepo": world.image, "imageTag": TAG, "imageDigest": world.image_digest,
        "packageKind": world.kind, "packagePath": f"package/{world.kind}", **(release or {}),
    }
    return step.body(images, {"capsule-release": parsed})


def judged(status: int, answer: dict) -> tuple[bool, bool, dict]:
    return STEP.judge(status, answer)


def allow(world: World) -> list[str]:
    return ["--allow", world.image, "--allow", world.capsule]


def behind(proxy, world: World) -> World:
    """The same world reached through ``proxy``: names (and so the capsule's
    release.yaml) use the proxy's host, and the image is pushed through it."""
    view = World(world.registry, world.skopeo, world.run_cli, world.chart, world.tmp,
                 world.image.replace(world.registry.host, proxy.host), world.capsule.replace(world.registry.host, proxy.host), "")
    view.image_digest = view.push_image_tag(TAG)
    return view


def small_body(image: str, capsule: dict) -> bytes:
    """The small form of the request: the image's release tag and a capsule given as is."""
    return json.dumps({"image": {"repoURL": image, "tag": TAG}, "capsule": capsule}).encode()
