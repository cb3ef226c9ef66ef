"""`pull` and `verify` against a registry that serves hostile capsules.

The evil registry (harness) serves what a real one would refuse to store:
archives with escaping names, links and devices, compression bombs, tar
headers that lie, and blobs or manifests under digests they do not have. Each
must be refused with exit 1, and nothing may be written outside the output
directory: the directory around it is compared before and after, and the
output is absent or empty.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.evil_registry import (
    EMPTY_CONFIG,
    EVIL_KINDS,
    MiB,
    SAMPLE_SHA,
    Zeros,
    build_layer,
    capsule_manifest,
    evil_layer,
    lying_size_layer,
    sample_capsule_files,
    sha256_digest,
)

TAG = f"git-{SAMPLE_SHA}"
NAME = "acme/shop-release-capsule"


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every path under ``root`` (links not followed) with its kind and size."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            kind = "link" if p.is_symlink() else "dir" if p.is_dir() else "file"
            out[str(p.relative_to(root))] = (kind, 0 if kind == "dir" else st.st_size)
    return out


@pytest.fixture
def arena(tmp_path: Path):
    """(work, out, outside): the output sits two levels down in ``work`` so '..'
    escapes land inside ``work``; ``outside`` is where absolute paths and
    symlinks point."""
    work = tmp_path / "work"
    (work / "nested").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    return work, work / "nested" / "out", outside


def run(run_cli, command: str, ref: str, out: Path):
    if command == "pull":
        return run_cli("pull", "--capsule", ref, "--output", out)
    # The image lives on the same loopback host: nothing here may reach a real registry.
    image = ref.split("/", 1)[0] + f"/acme/shop:{TAG}"
    return run_cli("verify", "--capsule", ref, "--image", image, "--output", out)


def assert_refused(proc, tmp_path: Path, before: dict, out: Path, *, reason: str) -> None:
    assert proc.returncode == 1, f"exit {proc.returncode}\n{proc.stderr}"
    assert reason in proc.stderr, proc.stderr
    assert not out.exists() or list(out.iterdir()) == []
    assert snapshot(tmp_path) == before, "files appeared or changed outside the output directory"


@pytest.mark.parametrize("command", ["pull", "verify"])
@pytest.mark.parametrize("kind", EVIL_KINDS)
def test_forbidden_entries_are_refused(evil_registry, run_cli, tmp_path, arena, command, kind):
    work, out, outside = arena
    digest = evil_registry.add_capsule(NAME, TAG, evil_layer(kind, outside=str(outside)))
    before = snapshot(tmp_path)
    proc = run(run_cli, command, evil_registry.ref(NAME, digest), out)
    assert_refused(proc, tmp_path, before, out, reason="layer archive: expected an archive spec section 2 allows, got archive entry")
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("command", ["pull", "verify"])
def test_gzip_bomb_is_stopped_while_reading(evil_registry, run_cli, tmp_path, arena, gzip_bomb, command):
    # 1 GiB of zeros in one file, about 1 MiB compressed.
    work, out, _ = arena
    digest = evil_registry.add_capsule(NAME, TAG, gzip_bomb)
    before = snapshot(tmp_path)
    proc = run(run_cli, command, evil_registry.ref(NAME, digest), out)
    assert_refused(proc, tmp_path, before, out, reason="more than the 50 MiB per-file limit")


def test_many_files_under_the_per_file_limit_still_hit_the_total(evil_registry, run_cli, tmp_path, arena):
    work, out, _ = arena
    files = dict(sample_capsule_files())
    for i in range(3):
        files[f"package/helm/templates/big{i}.yaml"] = Zeros(45 * MiB)
    digest = evil_registry.add_capsule(NAME, TAG, build_layer(files, level=1))
    before = snapshot(tmp_path)
    proc = run(run_cli, "pull", evil_registry.ref(NAME, digest), out)
    assert_refused(proc, tmp_path, before, out, reason="expands to more than the 100 MiB limit")


@pytest.mark.parametrize("claimed,actual,reason", [
    # The archive ends inside the member: the bytes are counted, not the header believed.
    (4096, 100, 'templates/liar.yaml": its header says 4096 bytes but the archive holds 1536'),
    # The surplus is read as the next header, which is garbage.
    (100, 4096, "is not a valid gzip'd tar: numeric field was not a number"),
], ids=["claims-more", "claims-less"])
def test_header_sizes_that_lie(evil_registry, run_cli, tmp_path, arena, claimed, actual, reason):
    work, out, _ = arena
    digest = evil_registry.add_capsule(NAME, TAG, lying_size_layer(claimed=claimed, actual=actual))
    before = snapshot(tmp_path)
    proc = run(run_cli, "pull", evil_registry.ref(NAME, digest), out)
    assert_refused(proc, tmp_path, before, out, reason=reason)


@pytest.mark.parametrize("command", ["pull", "verify"])
def test_a_blob_that_does_not_match_its_digest(evil_registry, run_cli, tmp_path, arena, command):
    work, out, _ = arena
    good = build_layer(sample_capsule_files())
    evil = evil_layer("symlink")
    claimed = sha256_digest(good)
    evil_registry.add_blob(EMPTY_CONFIG)
    evil_registry.add_blob_with_digest(evil, claimed)
    manifest = capsule_manifest(good)  # names the good layer's digest and size
    digest = evil_registry.add_manifest(NAME, TAG, manifest)
    before = snapshot(tmp_path)
    proc = run(run_cli, command, evil_registry.ref(NAME, digest), out)
    assert_refused(proc, tmp_path, before, out, reason="layer.digest: expected " + claimed)


@pytest.mark.parametrize("command", ["pull", "verify"])
def test_a_manifest_that_does_not_match_its_digest(evil_registry, run_cli, tmp_path, arena, command):
    work, out, _ = arena
    layer = build_layer(sample_capsule_files())
    evil_registry.add_blob(EMPTY_CONFIG)
    evil_registry.add_blob(layer)
    wanted = capsule_manifest(layer)
    dotdot = evil_layer("dotdot")
    served = capsule_manifest(dotdot)
    lie = sha256_digest(wanted)
    evil_registry.add_blob(dotdot)
    evil_registry.add_manifest(NAME, None, served, digest=lie)
    before = snapshot(tmp_path)
    proc = run(run_cli, command, evil_registry.ref(NAME, lie), out)
    assert_refused(proc, tmp_path, before, out, reason="manifest.digest: expected " + lie)
    # The layer the lying manifest names was never fetched.
    assert not any(r.path.endswith(sha256_digest(dotdot)) for r in evil_registry.requests)


def test_a_tag_that_lies_about_its_digest(evil_registry, run_cli, tmp_path, arena):
    # The registry's Docker-Content-Digest for a tag is not what it then serves by digest.
    work, out, _ = arena
    layer = build_layer(sample_capsule_files())
    evil_registry.add_blob(EMPTY_CONFIG)
    evil_registry.add_blob(layer)
    real = capsule_manifest(layer)
    lie = sha256_digest(b"a manifest that does not exist")
    evil_registry.add_manifest(NAME, TAG, real, digest=lie)
    before = snapshot(tmp_path)
    proc = run(run_cli, "pull", evil_registry.ref(NAME, TAG), out)
    assert_refused(proc, tmp_path, before, out, reason="manifest.digest")


def test_an_oversized_layer_descriptor_is_refused_before_download(evil_registry, run_cli, tmp_path, arena):
    work, out, _ = arena
    layer = build_layer(sample_capsule_files())
    digest = evil_registry.add_capsule(NAME, TAG, layer, layer_size=101 * MiB)
    before = snapshot(tmp_path)
    proc = run(run_cli, "pull", evil_registry.ref(NAME, digest), out)
    assert_refused(proc, tmp_path, before, out, reason="layers[0].size: expected at most 104857600 bytes")
    assert not any("/blobs/" + sha256_digest(layer) in r.path for r in evil_registry.requests)
