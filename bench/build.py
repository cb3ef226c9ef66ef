#!/usr/bin/env python3
"""Benchmark: `release-capsule build` against GNU tar + gzip on the same tree.

Not a test: it prints ratios measured in one run on this machine, the three
commands in turn each round (both layers, layer 0 alone with --no-helm-layer,
and one `tar --sort=name ... | gzip -n`). Targets (issue #16): wall ratio
<= 0.8 with both layers, <= 0.6 with --no-helm-layer, our peak RSS <= 64 MiB.
CPU seconds (user + sys, the children's own accounting) are printed too: on a
shared machine they move less than wall time.

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


def measure(argv: list[str], shell: bool = False, cwd: Path | None = None) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + sys) and peak RSS (KiB) of one run of a
    child process (with shell=True, the shell's children are not in the CPU
    figure; the peer's pipeline is measured through `sh -c` below, which waits
    for them, so they are)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, shell=shell, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"benchmark command failed: {argv}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def main() -> None:
    if not BIN.exists():
        sys.exit(f"{BIN} not found: run `cargo build --release` first")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        chart = tmp / "chart"
        size = make_chart(chart)
        both = [
            str(BIN), "build", "--sha", "0" * 40, "--image", "ghcr.io/bench/app",
            "--image-digest", "sha256:" + "1" * 64, "--source-repository", "https://github.com/bench/app",
            "--created", "2026-11-20T10:11:12Z", "--package-path", str(chart), "--output", str(tmp / "oci"),
        ]
        layer0 = [*both[:-1], str(tmp / "oci-layer0"), "--no-helm-layer"]
        peer = ["sh", "-c", f"tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C {chart} -c . "
                            f"| gzip -n > {tmp / 'peer.tar.gz'}"]
        commands = {"both": both, "layer0": layer0, "peer": peer}
        # Warm the page cache for all.
        for argv in commands.values():
            measure(argv)
        runs: dict[str, list[tuple[float, float, int]]] = {k: [] for k in commands}
        for _ in range(RUNS):
            for name, argv in commands.items():
                runs[name].append(measure(argv))

        def med(name: str, i: int) -> float:
            return statistics.median(r[i] for r in runs[name])

        def ratio(name: str, i: int) -> float:
            # Round by round, so a drift in the machine's speed cancels out.
            return statistics.median(a[i] / b[i] for a, b in zip(runs[name], runs["peer"]))

        blobs = sorted((f.stat().st_size for f in (tmp / "oci/blobs/sha256").iterdir()), reverse=True)
        print(f"tree: {FILES} files, {size / 2**20:.1f} MiB; our layers {blobs[0] / 2**20:.1f} + {blobs[1] / 2**20:.1f} MiB, "
              f"gzip {(tmp / 'peer.tar.gz').stat().st_size / 2**20:.1f} MiB")
        print(f"medians over {RUNS} rounds (wall / CPU user+sys):")
        labels = {"both": "build, both layers", "layer0": "build --no-helm-layer", "peer": "tar | gzip -n"}
        for name, label in labels.items():
            print(f"  {label:24} {med(name, 0) * 1000:6.0f} ms / {med(name, 1) * 1000:6.0f} ms")
        print(f"ratio, both layers vs tar+gzip:   wall {ratio('both', 0):.2f} (target <= 0.8), CPU {ratio('both', 1):.2f}")
        print(f"ratio, --no-helm-layer vs tar+gzip: wall {ratio('layer0', 0):.2f} (target <= 0.6), CPU {ratio('layer0', 1):.2f}")
        rss = max(r[2] for name in ("both", "layer0") for r in runs[name])
        print(f"our peak RSS: {rss / 1024:.1f} MiB  (target <= 64 MiB)")


if __name__ == "__main__":
    main()
