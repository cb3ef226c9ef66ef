#!/usr/bin/env python3
"""Benchmark: `release-capsule build` against GNU tar + gzip on the same tree.

Not a test: it prints ratios measured in one run on this machine. Targets
(issue #2): time ratio <= 1.0 and our peak RSS <= 64 MiB.

    cargo build --release && .venv/bin/python bench/build.py
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("RELEASE_CAPSULE_BIN", REPO / "target/release/release-capsule"))
FILES = 2000
TOTAL_BYTES = 30 * 1024 * 1024
RUNS = 5


def make_chart(root: Path) -> int:
    """A chart of FILES files, about TOTAL_BYTES, mostly YAML-like text with
    some incompressible blobs, like real charts with vendored assets."""
    rng = random.Random(42)
    (root / "templates").mkdir(parents=True)
    (root / "Chart.yaml").write_text("apiVersion: v2\nname: bench\nversion: 1.0.0\nappVersion: '1'\n")
    per_file = TOTAL_BYTES // FILES
    words = [f"key{i}: value-{i * 7919 % 10007}" for i in range(5000)]
    total = 0
    for i in range(FILES - 1):
        sub = root / "templates" / f"group-{i % 20:02}"
        sub.mkdir(exist_ok=True)
        if i % 10 == 0:
            data = rng.randbytes(per_file)
        else:
            lines, size = [], 0
            while size < per_file:
                line = "  " + rng.choice(words) + "\n"
                lines.append(line)
                size += len(line)
            data = "".join(lines).encode()
        (sub / f"manifest-{i:04}.yaml").write_bytes(data)
        total += len(data)
    return total


def measure(argv: list[str], shell: bool = False, cwd: Path | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one run of a child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, shell=shell, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"benchmark command failed: {argv}")
    return elapsed, usage.ru_maxrss


def main() -> None:
    if not BIN.exists():
        sys.exit(f"{BIN} not found: run `cargo build --release` first")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        chart = tmp / "chart"
        size = make_chart(chart)
        ours_cmd = [
            str(BIN), "build", "--sha", "0" * 40, "--image", "ghcr.io/bench/app",
            "--image-digest", "sha256:" + "1" * 64, "--source-repository", "https://github.com/bench/app",
            "--created", "2026-11-20T10:11:12Z", "--package-path", str(chart), "--output", str(tmp / "oci"),
        ]
        peer_cmd = (f"tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C {chart} -c . "
                    f"| gzip -n > {tmp / 'peer.tar.gz'}")
        # Warm the page cache for both.
        measure(ours_cmd)
        measure(peer_cmd, shell=True)
        ours, peer, rss = [], [], []
        for _ in range(RUNS):
            t, m = measure(ours_cmd)
            ours.append(t)
            rss.append(m)
            peer.append(measure(peer_cmd, shell=True)[0])
        o, p = statistics.median(ours), statistics.median(peer)
        layer = max((tmp / "oci/blobs/sha256").iterdir(), key=lambda f: f.stat().st_size).stat().st_size
        print(f"tree: {FILES} files, {size / 2**20:.1f} MiB; our layer {layer / 2**20:.1f} MiB, "
              f"gzip {(tmp / 'peer.tar.gz').stat().st_size / 2**20:.1f} MiB")
        print(f"release-capsule build: median {o * 1000:.0f} ms over {RUNS} runs")
        print(f"tar | gzip -n:         median {p * 1000:.0f} ms over {RUNS} runs")
        print(f"time ratio (ours / tar+gzip): {o / p:.2f}  (target <= 1.0)")
        print(f"our peak RSS: {max(rss) / 1024:.1f} MiB  (target <= 64 MiB)")


if __name__ == "__main__":
    main()
