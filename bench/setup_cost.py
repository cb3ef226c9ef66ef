#!/usr/bin/env python3
"""What a `uses: code-dot-org/release-capsule@v1` step costs before the tool runs:
pulling the prebuilt image (action.yml's docker:// reference) against compiling the
tool from the Dockerfile (what `image: Dockerfile` made every job do). A report, run
by hand:

    .venv/bin/python bench/setup_cost.py [--rounds 3]

1. The image: a static release build (glibc with crt-static here; the Dockerfile's
   musl target cannot be installed on these machines, and the two binaries are of
   similar size), the CA bundle and /tmp, packed as the Dockerfile's final stage
   would be: one gzip layer. Its compressed size is what a runner downloads.
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
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "py"))

from harness.registry import Registry  # noqa: E402

MiB = 1024 * 1024


def host_triple() -> str:
    out = subprocess.run(["rustc", "-vV"], capture_output=True, text=True, check=True).stdout
    return next(l.split(": ", 1)[1] for l in out.splitlines() if l.startswith("host: "))


def static_release_build() -> Path:
    triple = host_triple()
    env = dict(os.environ, **{f"CARGO_TARGET_{triple.upper().replace('-', '_')}_RUSTFLAGS": "-C target-feature=+crt-static"})
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet", "--target", triple], cwd=ROOT, env=env, check=True)
    return ROOT / "target" / triple / "release" / "release-capsule"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_layout(binary: Path, dest: Path) -> tuple[int, int]:
    """The final stage as an OCI layout; (compressed layer size, uncompressed size)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, path, mode in (("release-capsule", binary, 0o755),
                                 ("etc/ssl/certs/ca-certificates.crt", Path("/etc/ssl/certs/ca-certificates.crt"), 0o644)):
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            t.addfile(info, io.BytesIO(data))
        tmp = tarfile.TarInfo("tmp")
        tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
        t.addfile(tmp)
    raw = buf.getvalue()
    layer = gzip.compress(raw, compresslevel=6, mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Entrypoint": ["/release-capsule"], "Env": ["SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"]},
                         "rootfs": {"type": "layers", "diff_ids": [digest(raw)]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(layer), "size": len(layer)}]}).encode()
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for data in (layer, config, manifest):
        (blobs / digest(data).split(":")[1]).write_bytes(data)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(manifest), "size": len(manifest),
         "annotations": {"org.opencontainers.image.ref.name": "v0"}}]}))
    return len(layer), len(raw)


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
        skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp / 'layout'}:v0", ref, home=tmp)
        pulls = []
        for i in range(args.rounds):
            out = tmp / f"pulled-{i}"
            start = time.perf_counter()
            skopeo("copy", "--src-tls-verify=false", ref, f"oci:{out}:v0", home=tmp)
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
