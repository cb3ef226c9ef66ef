#!/usr/bin/env python3
"""What a `uses: code-dot-org/release-capsule@v1` step costs before the tool runs:
pulling the prebuilt image (action.yml's docker:// reference) against compiling the
tool from the Dockerfile (what `image: Dockerfile` made every job do). A report, run
by hand:

    .venv/bin/python bench/setup_cost.py [--rounds 3]

1. The image: the Dockerfile's final stage, built by `scripts/image --binary` (as
   root, with podman's settings from scripts/bootstrap) around a static release
   build (glibc with crt-static here; the Dockerfile's musl target cannot be
   installed on these machines, and the two binaries are of similar size), copied
   out of container storage with gzip layers as a registry serves them. Its
   compressed size is what a runner downloads.
2. Pulling it: `skopeo copy docker://… oci:…` from a local docker-registry, median
   of --rounds (loopback: this is the floor; a runner pulling from GHCR adds
   network time for the compressed size above).
3. Compiling it instead: a cold `cargo build --release --locked` in an empty target
   directory, with the crates already downloaded (the Docker build also downloads
   them, pulls the rust:1.95-bookworm base image and installs musl-tools, none of
   which is counted here).
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "py"))

from harness.container import Podman  # noqa: E402
from harness.registry import Registry  # noqa: E402
from image_layouts import from_container_storage  # noqa: E402

MiB = 1024 * 1024


def host_triple() -> str:
    out = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
    return next(l.split(": ", 1)[1] for l in out.splitlines() if l.startswith("host: "))


def static_release_build() -> Path:
    triple = host_triple()
    env = dict(os.environ, **{f"CARGO_TARGET_{triple.upper().replace('-', '_')}_RUSTFLAGS": "-C target-feature=+crt-static"})
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet", "--target", triple], cwd=ROOT, env=env, check=True)
    return ROOT / "target" / triple / "release" / "release-capsule"


def image_layout(binary: Path, dest: Path) -> tuple[int, int]:
    """The action image, from the Dockerfile (scripts/image --binary), as an OCI
    layout at ``dest`` tagged ``image``; (compressed size, uncompressed size)."""
    podman = Podman()
    tag = f"localhost/release-capsule-bench:{uuid.uuid4().hex[:8]}"
    podman.build(tag, binary)
    try:
        manifest, _, layers = from_container_storage(tag, dest, podman.env)
    finally:
        podman.remove_image(tag)
    return (sum(layer["size"] for layer in manifest["layers"]),
            sum(len(gzip.decompress(path.read_bytes())) for path in layers))


def skopeo(*args: str, home: Path) -> None:
    subprocess.run(["skopeo", *args], check=True, capture_output=True, env={"PATH": os.environ["PATH"], "HOME": str(home)})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    binary = static_release_build()
    with tempfile.TemporaryDirectory() as tmp, Registry(access_log=False) as registry:
        tmp = Path(tmp)
        compressed, uncompressed = image_layout(binary, tmp / "layout")
        ref = f"docker://{registry.host}/code-dot-org/release-capsule:v0"
        skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp / 'layout'}:image", ref, home=tmp)
        pulls = []
        for i in range(args.rounds):
            out = tmp / f"pulled-{i}"
            start = time.perf_counter()
            skopeo("copy", "--src-tls-verify=false", ref, f"oci:{out}:image", home=tmp)
            pulls.append(time.perf_counter() - start)
            shutil.rmtree(out)
        target = tmp / "cold-target"
        start = time.perf_counter()
        subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=ROOT, check=True,
                       env=dict(os.environ, CARGO_TARGET_DIR=str(target)))
        compile_s = time.perf_counter() - start
    print("| What | Measured |")
    print("| --- | --- |")
    print(f"| binary (static, stripped) | {binary.stat().st_size / MiB:.1f} MiB |")
    print(f"| image layer, compressed (what a runner downloads) | {compressed / MiB:.1f} MiB ({uncompressed / MiB:.1f} MiB unpacked) |")
    print(f"| pull from a local registry (skopeo, median of {args.rounds}) | {statistics.median(pulls):.2f} s |")
    print(f"| cold `cargo build --release` instead (2 cores, crates already downloaded) | {compile_s:.0f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
