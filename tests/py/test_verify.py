"""`release-capsule verify` and `pull` against a real registry (distribution 2.8).

Capsules reach the registry without our publish command: `release-capsule build`
writes an OCI layout and skopeo pushes it, or a test crafts the layer itself
(harness builders, section 2) when it needs a capsule `build` refuses to make.
The app image is a minimal OCI image layout made here, pushed the same way.
"""

from __future__ import annotations

import hashlib
import json
import tarfile

import pytest

from harness import free_port
from image_layouts import multi_arch
from publish_support import publish_argv, result_json
from harness.evil_registry import package_tree_digest
from verify_support import OTHER_SHA, OTHER_TAG, SHA, TAG, World

def failures(proc) -> list[str]:
    """The `field: expected X, got Y` lines of a failed verification."""
    return [line.strip() for line in proc.stderr.splitlines() if line.startswith("  ") and ": expected " in line]


def failed_check_names(proc) -> list[str]:
    report = json.loads(proc.stdout)
    assert report["verified"] is False
    return [c["name"] for c in report["checks"] if not c["ok"]]


# -- verified --------------------------------------------------------------------

def test_the_real_release_verifies_and_lands_in_output(world, tmp_path):
    import helm_python

    digest = world.publish()
    out = tmp_path / "verified"
    proc = world.verify(f"{world.capsule}:{TAG}", "--image-digest", world.image_digest, "--output", out, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["verified"] is True
    assert report["capsule"] == f"{world.capsule}@{digest}"
    assert (report["image"], report["imageDigest"], report["gitCommit"]) == (f"{world.image}:{TAG}", world.image_digest, SHA)
    assert all(c["ok"] for c in report["checks"]) and len(report["checks"]) > 20
    names = {c["name"] for c in report["checks"]}
    assert {"manifest.digest", "layer.digest", "layer archive", "gitCommit", "image.digest (registry)", "package.digest"} <= names

    # What a promotion does next: helm-template the verified chart with repo@digest.
    assert (out / "release.yaml").is_file() and (out / "metadata" / "sbom.json").is_file()
    chart = out / "package" / "helm"
    # The coreutils one-liner of spec section 3 agrees with the digest verify accepted.
    files = {str(p.relative_to(out)): p.read_bytes() for p in chart.rglob("*") if p.is_file()}
    assert package_tree_digest(files) == report["packageDigest"]
    with helm_python.Chart.load(str(chart)) as loaded:
        rendered = loaded.render({"image": f"{world.image}@{world.image_digest}"})
    deployment = next(v for k, v in rendered.items() if k.endswith("deployment.yaml"))
    assert f'image: "{world.image}@{world.image_digest}"' in deployment


def test_verify_by_digest_and_human_output(world):
    digest = world.publish()
    proc = world.verify(f"{world.capsule}@{digest}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"verified {world.capsule}@{digest}\n"), proc.stdout
    assert f"commit   {SHA}" in proc.stdout


def test_a_capsule_crafted_to_spec_verifies(world):
    # The control for the crafted failures below: the builder makes valid capsules.
    digest = world.publish_crafted(world.crafted_files())
    proc = world.verify(f"{world.capsule}@{digest}", "--image-digest", world.image_digest)
    assert proc.returncode == 0, proc.stderr


def test_what_publish_pushes_verifies(world):
    # Our publish end to end: it resolves the image already in the registry.
    published = result_json(world.run_cli(publish_argv(world.image, sha=SHA, chart=world.chart)))
    assert published["imageDigest"] == world.image_digest
    proc = world.verify(f"{world.capsule}:{TAG}", "--image-digest", world.image_digest, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["capsule"] == f"{world.capsule}@{published['digest']}"


def test_a_multi_arch_release_verifies_against_its_index_digest(registry, repo_name, run_cli, tmp_path):
    layout = multi_arch(tmp_path / "image", tag=TAG)
    image = f"{registry.host}/{repo_name}"
    result_json(run_cli(publish_argv(image, "--image-layout", layout.path, sha=SHA)))
    proc = run_cli("verify", "--capsule", f"{image}-release-capsule:{TAG}", "--image", f"{image}:{TAG}",
                   "--image-digest", layout.digest, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["imageDigest"] == layout.digest


# -- verification failed (exit 1) ------------------------------------------------------

def test_image_digest_flag_mismatch(world):
    world.publish()
    wrong = "sha256:" + hashlib.sha256(b"the image Freight names").hexdigest()
    proc = world.verify(f"{world.capsule}:{TAG}", "--image-digest", wrong)
    assert proc.returncode == 1, proc.stderr
    assert failures(proc) == [f"image.digest (--image-digest): expected {wrong}, got {world.image_digest}"]


def test_capsule_built_for_another_image_digest_than_the_registry_has(world):
    stale = "sha256:" + hashlib.sha256(b"an image that was re-pushed since").hexdigest()
    world.publish(image_digest=stale)
    proc = world.verify(f"{world.capsule}:{TAG}", "--json")
    assert proc.returncode == 1, proc.stderr
    # The manifest annotation carries the same stale digest, so only the registry check fails.
    assert failed_check_names(proc) == ["image.digest (registry)"]
    assert f"image.digest (registry): expected {world.image_digest}, got {stale}" in failures(proc)


def test_capsule_tag_must_pair_with_the_image_tag(world):
    world.push_image_tag(OTHER_TAG)
    world.publish(sha=OTHER_SHA)
    proc = world.verify(f"{world.capsule}:{OTHER_TAG}")
    assert proc.returncode == 1, proc.stderr
    lines = failures(proc)
    assert f"capsule tag (--capsule): expected {TAG}, got {OTHER_TAG}" in lines
    assert f"gitCommit: expected {SHA}, got {OTHER_SHA}" in lines
    assert f"image.tag: expected {TAG}, got {OTHER_TAG}" in lines
    assert f"capsule.tag: expected {TAG}, got {OTHER_TAG}" in lines
    # The same capsule checked against its own image verifies.
    assert world.verify(f"{world.capsule}:{OTHER_TAG}", image=f"{world.image}:{OTHER_TAG}").returncode == 0


def test_another_commits_capsule_under_this_release_tag(world):
    world.publish(sha=OTHER_SHA, tag=TAG)
    proc = world.verify(f"{world.capsule}:{TAG}", "--json")
    assert proc.returncode == 1, proc.stderr
    assert failed_check_names(proc) == ["gitCommit", "image.tag", "capsule.tag"]
    assert f"gitCommit: expected {SHA}, got {OTHER_SHA}" in failures(proc)


def test_tampered_package_file(world):
    files = world.crafted_files()
    claimed = package_tree_digest(files)
    files["package/helm/values.yaml"] = b"replicaCount: 100\n"  # after release.yaml was written
    digest = world.publish_crafted(files, package_digest=claimed)
    proc = world.verify(f"{world.capsule}@{digest}", "--json")
    assert proc.returncode == 1, proc.stderr
    assert failed_check_names(proc) == ["package.digest"]
    recomputed = package_tree_digest(files)
    assert failures(proc) == [f"package.digest: expected {recomputed} (recomputed from 3 files under package/helm/), got {claimed}"]


def test_wrong_artifact_type(world):
    digest = world.publish_crafted(world.crafted_files(), artifact_type="application/vnd.cncf.helm.config.v1+json")
    proc = world.verify(f"{world.capsule}@{digest}")
    assert proc.returncode == 1, proc.stderr
    assert failures(proc) == ["artifactType: expected application/vnd.release-capsule.v1, got application/vnd.cncf.helm.config.v1+json"]


def test_missing_metadata_file(world):
    files = world.crafted_files()
    del files["metadata/provenance.json"]
    digest = world.publish_crafted(files)
    proc = world.verify(f"{world.capsule}@{digest}")
    assert proc.returncode == 1, proc.stderr
    assert failures(proc) == ["metadata/provenance.json: expected a JSON file, got missing"]


def test_failed_verification_leaves_no_tree_in_output(world, tmp_path):
    world.publish()
    out = tmp_path / "promotion"
    out.mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    wrong = "sha256:" + "ab" * 32
    proc = world.verify(f"{world.capsule}:{TAG}", "--image-digest", wrong, "--output", out)
    assert proc.returncode == 1, proc.stderr
    assert list(out.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_missing_capsule_is_a_failed_verification(world):
    proc = world.verify(f"{world.capsule}:{TAG}")
    assert proc.returncode == 1, proc.stderr
    assert failures(proc) == [f"capsule: expected {world.capsule}:{TAG} in the registry, got no such tag"]


# -- bad input (exit 2) and registry failures (exit 3) -------------------------------------

@pytest.mark.parametrize("image", ["{image}:latest", "{image}", f"{{image}}@sha256:{'ab' * 32}", "not a reference"])
def test_bad_image_reference_is_exit_2(world, image):
    proc = world.verify(f"{world.capsule}:{TAG}", image=image.format(image=world.image))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: --image"), proc.stderr


def test_non_empty_output_is_exit_2_before_any_request(world, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = world.verify(f"{world.capsule}:{TAG}", "--output", out)
    assert proc.returncode == 2, proc.stderr
    assert "is not empty" in proc.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_unreachable_registry_is_exit_3(run_cli, tmp_path):
    port = free_port()  # nothing listens there
    ref = f"127.0.0.1:{port}/acme/shop"
    proc = run_cli("verify", "--capsule", f"{ref}-release-capsule:{TAG}", "--image", f"{ref}:{TAG}", timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert f"127.0.0.1:{port}" in proc.stderr
    proc = run_cli("pull", "--capsule", f"{ref}-release-capsule:{TAG}", "--output", tmp_path / "out", timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert not (tmp_path / "out").exists()


def test_credentials_come_from_the_environment(auth_registry, repo_name, skopeo, run_cli, repo_root, tmp_path):
    image = f"{auth_registry.host}/{repo_name}"
    creds = f"{auth_registry.username}:{auth_registry.password}"
    w = World(auth_registry, skopeo, run_cli, repo_root / "examples/charts/hello", tmp_path, image, f"{image}-release-capsule", "", creds)
    w.image_digest = w.push_image_tag(TAG)
    w.publish()
    env = {"REGISTRY_USERNAME": auth_registry.username, "REGISTRY_PASSWORD": auth_registry.password}
    proc = w.verify(f"{w.capsule}:{TAG}", env=env)
    assert proc.returncode == 0, proc.stderr
    assert auth_registry.password not in proc.stdout + proc.stderr
    # Refused credentials are the user's to fix: exit 2, as publish does.
    proc = w.verify(f"{w.capsule}:{TAG}")
    assert proc.returncode == 2, proc.stderr
    assert "access denied" in proc.stderr
    wrong = w.verify(f"{w.capsule}:{TAG}", env={**env, "REGISTRY_PASSWORD": "not-the-password"})
    assert wrong.returncode == 2, wrong.stderr
    assert "not-the-password" not in wrong.stderr


# -- pull ------------------------------------------------------------------------------

def test_pull_unpacks_what_the_layer_holds(world, tmp_path):
    digest = world.publish()
    layout, report = world.build()
    out = tmp_path / "pulled"
    proc = world.run_cli("pull", "--capsule", f"{world.capsule}:{TAG}", "--output", out, "--json")
    assert proc.returncode == 0, proc.stderr
    pulled = json.loads(proc.stdout)
    assert pulled["capsule"] == f"{world.capsule}@{digest}"
    assert pulled["layerDigest"] == report["layerDigest"]
    # Python's tarfile reads the same tree out of the layer blob.
    extracted = tmp_path / "extracted"
    with tarfile.open(layout / "blobs" / "sha256" / report["layerDigest"].removeprefix("sha256:"), "r:gz") as tar:
        tar.extractall(extracted, filter="data")
    ours = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    theirs = {str(p.relative_to(extracted)): p.read_bytes() for p in extracted.rglob("*") if p.is_file()}
    assert ours == theirs and pulled["fileCount"] == len(ours)


def test_pull_does_not_judge_the_release(world, tmp_path):
    # pull checks digests and archive safety only: a capsule for another image pulls fine.
    world.publish(image_digest="sha256:" + "cd" * 32)
    proc = world.run_cli("pull", "--capsule", f"{world.capsule}:{TAG}", "--output", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"pulled {world.capsule}@sha256:")
