"""A real registry holding an app image, and ways to add capsules to it: built by
`release-capsule build` and pushed by skopeo, or crafted layer by layer (harness
builders) when a test needs a capsule `build` refuses to make. Shared by the
verify tests and the verifier service tests."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from harness.evil_registry import (
    EMPTY_CONFIG,
    build_layer,
    capsule_annotations,
    capsule_manifest,
    package_tree_digest,
    sample_capsule_files,
    sha256_digest,
    write_oci_layout,
)

SHA = "4a5b6c7d8e9f00112233445566778899aabbccdd"
OTHER_SHA = "0000111122223333444455556666777788889999"
TAG = f"git-{SHA}"
OTHER_TAG = f"git-{OTHER_SHA}"
CREATED = "2026-11-20T10:11:12Z"
SOURCE = "https://github.com/acme/shop"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def skopeo_push(skopeo: str, layout: Path, ref_name: str, dest: str, creds: str | None = None) -> None:
    cmd = [skopeo, "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false"]
    if creds:
        cmd += ["--dest-creds", creds]
    subprocess.run([*cmd, f"oci:{layout}:{ref_name}", f"docker://{dest}"], check=True, capture_output=True)


def app_image_layout(directory: Path, tag: str, body: bytes = b"hello from the app\n") -> str:
    """A minimal, valid single-layer OCI image; returns its manifest digest."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("app/hello.txt")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": CREATED,
        "config": {"Labels": {"org.opencontainers.image.created": CREATED}},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(raw.getvalue())]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256_digest(layer), "size": len(layer)}],
    }, separators=(",", ":")).encode()
    return write_oci_layout(directory, manifest, [config, layer], tag)


@dataclass
class World:
    """An app image at ``image:git-<SHA>`` in a real registry, and ways to add capsules."""

    registry: object
    skopeo: str
    run_cli: object
    chart: Path
    tmp: Path
    image: str
    capsule: str
    image_digest: str
    creds: str | None = None
    count: int = 0
    kind: str = "helm"  # what ``chart`` holds: helm or kustomize

    def _dir(self, name: str) -> Path:
        self.count += 1
        return self.tmp / f"{name}-{self.count}"

    def push_image_tag(self, tag: str) -> str:
        layout = self._dir("image")
        digest = app_image_layout(layout, tag)
        skopeo_push(self.skopeo, layout, tag, f"{self.image}:{tag}", self.creds)
        return digest

    def build(self, *, sha: str = SHA, image_digest: str | None = None, created: str = CREATED) -> tuple[Path, dict]:
        out = self._dir("capsule")
        proc = self.run_cli(
            "build", "--sha", sha, "--image", self.image, "--image-digest", image_digest or self.image_digest,
            "--capsule-repository", self.capsule, "--source-repository", SOURCE,
            "--package-kind", self.kind, "--package-path", self.chart, "--output", out, "--created", created, "--json",
        )
        assert proc.returncode == 0, proc.stderr
        return out, json.loads(proc.stdout)

    def publish(self, *, sha: str = SHA, tag: str | None = None, image_digest: str | None = None,
                created: str = CREATED) -> str:
        """`build` + `skopeo copy` to ``capsule:<tag>`` (default git-<sha>); returns the digest."""
        out, report = self.build(sha=sha, image_digest=image_digest, created=created)
        skopeo_push(self.skopeo, out, f"git-{sha}", f"{self.capsule}:{tag or f'git-{sha}'}", self.creds)
        return report["digest"]

    def crafted_files(self) -> dict[str, bytes]:
        """A consistent capsule file set for this world's image (harness builder)."""
        return sample_capsule_files(
            sha=SHA, image_repo=self.image, image_digest=self.image_digest, capsule_repo=self.capsule,
        )

    def publish_crafted(self, files: dict[str, bytes], *, tag: str = TAG, package_digest: str | None = None, **manifest_kwargs) -> str:
        """Pushes a capsule whose layer is built here from ``files``; returns its digest."""
        layer = build_layer(files)
        annotations = capsule_annotations(
            sha=SHA, image_repo=self.image, image_digest=self.image_digest, created=CREATED,
            package_digest=package_digest or package_tree_digest(files),
        )
        manifest = capsule_manifest(layer, annotations=annotations, **manifest_kwargs)
        layout = self._dir("crafted")
        digest = write_oci_layout(layout, manifest, [EMPTY_CONFIG, layer], tag)
        skopeo_push(self.skopeo, layout, tag, f"{self.capsule}:{tag}", self.creds)
        return digest

    def verify(self, capsule_ref: str, *extra, image: str | None = None, env=None):
        return self.run_cli("verify", "--capsule", capsule_ref, "--image", image or f"{self.image}:{TAG}", *extra, env=env)
