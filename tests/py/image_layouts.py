"""Small, real OCI image layouts for publish tests and benchmarks, written the
way ``docker buildx build --output type=oci`` lays them out: ``oci-layout``,
``index.json`` and ``blobs/sha256/...``; optionally packed into a tar.

Layers are real (uncompressed) tar archives, configs real image configs with
``rootfs.diff_ids``, so skopeo and registries treat them as any image.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"
CREATED = "org.opencontainers.image.created"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_path(root: Path, digest: str) -> Path:
    """Where a layout keeps the blob ``digest``."""
    return root / "blobs" / "sha256" / digest.split(":")[1]


def compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode()


@dataclass
class Layout:
    path: Path
    digest: str  # the digest of the image (manifest, or index for multi-arch)
    media_type: str
    blob_digests: list[str] = field(default_factory=list)  # every blob: layers, configs, manifests

    def blob(self, digest: str) -> Path:
        return blob_path(self.path, digest)

    def tar(self, dest: Path) -> Path:
        """The same layout packed into a tar (``type=oci,dest=x.tar``)."""
        with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as t:
            for p in sorted(self.path.rglob("*")):
                t.add(p, arcname=str(p.relative_to(self.path)), recursive=False)
        return dest


class _Writer:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self.blobs: list[str] = []

    def blob(self, data: bytes) -> dict:
        d = digest_of(data)
        blob_path(self.root, d).write_bytes(data)
        self.blobs.append(d)
        return {"digest": d, "size": len(data)}

    def layer_from_random(self, size: int, rng: random.Random, name: str) -> dict:
        """An uncompressed tar layer holding one file of ``size`` random bytes,
        streamed to disk and hashed on the way (never whole in memory)."""
        tmp = self.root / "blobs" / "sha256" / ".layer.partial"
        h = hashlib.sha256()

        class HashingFile(io.RawIOBase):
            def __init__(self, f):
                self.f = f

            def writable(self):
                return True

            def write(self, b):
                h.update(b)
                return self.f.write(b)

        class RandomReader(io.RawIOBase):
            def __init__(self, n):
                self.left = n

            def readable(self):
                return True

            def readinto(self, buf):
                n = min(len(buf), self.left)
                if n == 0:
                    return 0
                buf[:n] = rng.randbytes(n) if n < 1 << 20 else os.urandom(n)
                self.left -= n
                return n

        with open(tmp, "wb") as raw:
            hf = HashingFile(raw)
            with tarfile.open(fileobj=hf, mode="w|", format=tarfile.PAX_FORMAT) as t:
                info = tarfile.TarInfo(name)
                info.size = size
                info.mtime = 0
                t.addfile(info, io.BufferedReader(RandomReader(size), 1 << 20))
        d = "sha256:" + h.hexdigest()
        size_on_disk = tmp.stat().st_size
        tmp.rename(blob_path(self.root, d))
        self.blobs.append(d)
        return {"mediaType": OCI_LAYER, "digest": d, "size": size_on_disk}

    def index_json(self, manifests: list[dict]) -> None:
        (self.root / "index.json").write_bytes(
            compact({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
        )


def _image(w: _Writer, *, arch: str, created: str | None, label: str | None,
           annotation: str | None, layer_sizes: list[int], rng: random.Random) -> dict:
    layers = [w.layer_from_random(n, rng, f"data-{arch}-{i}.bin") for i, n in enumerate(layer_sizes)]
    # Uncompressed layers: diff_id == layer digest.
    config = {"architecture": arch, "os": "linux",
              "config": {"Labels": {CREATED: label} if label else {}},
              "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]}}
    if created is not None:
        config["created"] = created
    cfg = w.blob(compact(config))
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, **cfg}, "layers": layers}
    if annotation:
        manifest["annotations"] = {CREATED: annotation}
    m = w.blob(compact(manifest))
    return {"mediaType": OCI_MANIFEST, **m,
            "platform": {"architecture": arch, "os": "linux"}}


def single_arch(dest: Path, *, tag: str | None = None, created: str | None = "2026-03-04T05:06:07Z",
                label: str | None = None, annotation: str | None = None,
                layer_sizes: list[int] = (4096,), seed: int = 1) -> Layout:
    """One manifest; its date in config ``created`` (and/or label, annotation)."""
    rng = random.Random(seed)
    w = _Writer(dest)
    m = _image(w, arch="amd64", created=created, label=label, annotation=annotation,
               layer_sizes=list(layer_sizes), rng=rng)
    top = dict(m)
    top.pop("platform")
    if tag:
        top["annotations"] = {REF_NAME: tag}
    w.index_json([top])
    return Layout(dest, m["digest"], OCI_MANIFEST, w.blobs)


def multi_arch(dest: Path, *, tag: str | None = None,
               created: tuple[str | None, str | None] = ("2026-03-04T05:06:07Z", "2026-03-04T05:09:00Z"),
               index_annotation: str | None = None, layer_sizes: list[int] = (4096,),
               seed: int = 2) -> Layout:
    """An index of linux/amd64 and linux/arm64 images (configs dated ``created``)."""
    rng = random.Random(seed)
    w = _Writer(dest)
    children = [
        _image(w, arch=arch, created=c, label=None, annotation=None, layer_sizes=list(layer_sizes), rng=rng)
        for arch, c in zip(("amd64", "arm64"), created)
    ]
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}
    if index_annotation:
        index["annotations"] = {CREATED: index_annotation}
    i = w.blob(compact(index))
    top = {"mediaType": OCI_INDEX, **i}
    if tag:
        top["annotations"] = {REF_NAME: tag}
    w.index_json([top])
    return Layout(dest, i["digest"], OCI_INDEX, w.blobs)


def from_container_storage(image: str, dest: Path, env: dict[str, str]) -> tuple[dict, dict, list[Path]]:
    """``image`` copied out of local container storage (where buildah and podman
    keep it) as a registry serves it, layers gzip-compressed as docker and buildx
    push them: an OCI layout at ``dest``, tagged ``image``. ``env`` is podman's
    (harness.container.Podman.env). Returns (manifest, config, layer blob paths)."""
    copy = subprocess.run(["skopeo", "copy", "--quiet", "--dest-compress", "--dest-compress-format", "gzip",
                           f"containers-storage:{image}", f"oci:{dest}:image"],
                          env=env, capture_output=True, text=True, timeout=120)
    if copy.returncode != 0:
        raise AssertionError(f"skopeo copy containers-storage:{image} failed: {copy.stderr}")
    index = json.loads((dest / "index.json").read_text())
    manifest = json.loads(blob_path(dest, index["manifests"][0]["digest"]).read_text())
    config = json.loads(blob_path(dest, manifest["config"]["digest"]).read_text())
    return manifest, config, [blob_path(dest, layer["digest"]) for layer in manifest["layers"]]
