#!/usr/bin/env python3
"""`release-capsule serve` behind a faulty registry: no wrong answer, ever.

    .venv/bin/python bench/serve_faults.py [--bin target/debug/release-capsule] [--requests 300] [--seed 13]

A real docker-registry holds capsules that pass spec section 8 and capsules that
fail it; two services (one caching, one with --cache-entries 0, so every request
downloads and unpacks) reach it through the fault proxy, which answers 503, 429
with Retry-After, 502 with an HTML page, resets and closes connections, cuts
answers off mid-body, and stalls for 30 s. The services' --timeout-seconds is 3,
so a stall is answered 503 by the service's own deadline.

While faults are injected, a capsule that passes must get 200 or a retryable
502/503, never 422; one that fails must get 422 or 502/503, never 200. One of
the failing requests asks for a real capsule's digest in an allowed repository
that does not hold it: the cache must not let it answer for the real one. Then
the faults stop and every request must get its true answer at once, with no
restart (nothing bad was cached). The figures are printed; tests/py/test_serve_faults.py
runs the same (with fewer requests) inside scripts/test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "py"))

from harness.fault_proxy import FaultProxy  # noqa: E402
from harness.registry import Registry  # noqa: E402
from serve_support import Server, small_body, stage_body  # noqa: E402
from harness.evil_registry import package_tree_digest  # noqa: E402
from verify_support import TAG, World  # noqa: E402

HELLO = ROOT / "examples" / "charts" / "hello"
TIMEOUT_SECONDS = 3
# Of the proxy's requests: dropped connections, status answers, cut answers, stalls.
FAULTS = {"drop_rate": 0.06, "fault_rate": 0.18, "cut_rate": 0.06, "stall_rate": 0.01}
RETRYABLE = {502, 503}


@dataclass
class Case:
    """One kind of request and the answer it deserves."""

    name: str
    body: bytes
    verdict: int  # 200 or 422


@dataclass
class Figures:
    requests: int = 0
    proxy_requests: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    answers: Counter = field(default_factory=Counter)
    # 503s given by the service's own deadline (a stalled registry).
    deadline: int = 0
    wrong: list[tuple[str, int, str]] = field(default_factory=list)
    after: Counter = field(default_factory=Counter)
    wrong_after: list[tuple[str, int, str]] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(self.answers.items()))
        return [
            f"requests under faults: {self.requests} ({self.proxy_requests} registry requests through the proxy, {self.seconds:.1f} s)",
            f"faults injected: {sum(self.faults.values())} ({faults})",
            f"answers under faults: {answers} ({self.deadline} of the 503s by the service's own {TIMEOUT_SECONDS} s deadline)",
            f"wrong answers under faults: {len(self.wrong)}",
            f"after the faults stopped: {sum(self.after.values())} requests, wrong answers: {len(self.wrong_after)}",
        ]


def cli(binary: Path, tmp: Path):
    """A `run_cli` for World: the binary with a clean environment."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "TMPDIR": str(tmp)}

    def run(*args, **_):
        return subprocess.run([str(binary), *[str(a) for a in args]], env=env, capture_output=True, text=True, timeout=120)

    return run


def worlds(registry, proxy: FaultProxy, skopeo: str, run_cli, tmp: Path) -> list[Case]:
    """Capsules in the registry, named through the proxy, and the requests for them."""

    def world(name: str) -> World:
        image = f"{proxy.host}/faults/{name}"
        w = World(registry, skopeo, run_cli, HELLO, tmp / name, image, f"{image}-release-capsule", "")
        (tmp / name).mkdir(parents=True)
        w.image_digest = w.push_image_tag(TAG)
        return w

    good, moved, tampered, unsafe, empty = (world(n) for n in ("good", "moved", "tampered", "unsafe", "empty"))
    digest = good.publish()
    moved.publish(image_digest="sha256:" + "0" * 64)  # names an image digest the tag does not resolve to
    files = tampered.crafted_files()
    tampered.publish_crafted({**files, "package/helm/values.yaml": b"replicaCount: 99\n"},
                             package_digest=package_tree_digest(files))
    unsafe.publish_crafted({**unsafe.crafted_files(), "package/helm/../../escape": b"x"})
    return [
        # First: if the cache kept this absence, every request for the real capsule would fail after it.
        Case("fails: digest asked of a repository without it", small_body(good.image, {"repoURL": empty.capsule, "digest": digest}), 422),
        Case("passes, by tag", stage_body(good), 200),
        Case("passes, by digest", small_body(good.image, {"repoURL": good.capsule, "digest": digest}), 200),
        Case("fails: the image tag moved", stage_body(moved), 422),
        Case("fails: package tampered with", stage_body(tampered), 422),
        Case("fails: unsafe archive", stage_body(unsafe), 422),
        Case("fails: no such capsule tag", stage_body(empty), 422),
    ]


def ask(server: Server, case: Case) -> tuple[int, str]:
    try:
        status, answer = server.verify(case.body)
        return status, answer.get("reason", "")
    except OSError as e:
        return 0, f"no answer: {e}"


def run(binary: Path, registry, skopeo: str, tmp: Path, *, requests: int = 300, seed: int = 13, concurrency: int = 8,
        stall_seconds: float = 30.0) -> Figures:
    proxy = FaultProxy(registry.host, seed=seed, stall_seconds=stall_seconds, fault_statuses=(503, 429, 502),
                       retry_after_choices=(None, "0", "1", "2"))
    servers: list[Server] = []
    try:
        cases = worlds(registry, proxy, skopeo, cli(binary, tmp), tmp)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "TMPDIR": str(tmp)}
        common = ["--allow", f"{proxy.host}/faults/*", "--timeout-seconds", str(TIMEOUT_SECONDS), "--max-concurrent", "8"]
        servers = [Server(binary, *common, env=env), Server(binary, *common, "--cache-entries", "0", env=env)]
        figures = Figures()
        jobs = [(servers[i % 2], cases[i % len(cases)]) for i in range(requests)]

        proxy.reset()
        for name, value in FAULTS.items():
            setattr(proxy, name, value)
        started = time.monotonic()
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(lambda job: (job[1], *ask(*job)), jobs))
        figures.seconds = time.monotonic() - started
        figures.requests = len(results)
        figures.proxy_requests = proxy.requests_seen
        figures.faults = proxy.faults_by_kind()
        for case, status, reason in results:
            figures.answers[status] += 1
            figures.deadline += status == 503 and "did not finish within" in reason
            if status not in RETRYABLE | {case.verdict}:
                figures.wrong.append((case.name, status, reason))

        for name in FAULTS:
            setattr(proxy, name, 0.0)
        for server in servers:
            for case in cases:
                status, reason = ask(server, case)
                figures.after[status] += 1
                if status != case.verdict:
                    figures.wrong_after.append((case.name, status, reason))
        return figures
    finally:
        for server in servers:
            server.stop()
        proxy.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", type=Path, default=ROOT / "target" / "debug" / "release-capsule")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--seed", type=int, default=13)
    args = p.parse_args()
    with Registry() as registry, tempfile.TemporaryDirectory(prefix="serve-faults-") as tmp:
        figures = run(args.bin, registry, "skopeo", Path(tmp), requests=args.requests, seed=args.seed)
    for line in figures.lines():
        print(line)
    for name, status, reason in figures.wrong + figures.wrong_after:
        print(f"  WRONG: {name}: {status}: {reason}")
    return 1 if figures.wrong or figures.wrong_after else 0


if __name__ == "__main__":
    sys.exit(main())
