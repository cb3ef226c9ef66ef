"""At most 10,000 entries (files and directories) in a capsule layer (spec
section 2), so that a capsule of empty files cannot exhaust a consumer's inodes
or time. `build` and `publish` refuse a package that would go over (exit 2,
naming the count and the limit, nothing pushed); `pull`, `verify` and `serve`
refuse such a capsule while unpacking, before the excess is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.evil_registry import SAMPLE_SHA, build_layer, sample_capsule_files
from publish_support import SHA, SOURCE

LIMIT = 10_000
# Layer 0 holds 6 entries of its own: metadata/, its two files, package/, package/<kind>/, release.yaml.
PACKAGE_LIMIT = LIMIT - 6
IMAGE_DIGEST = "sha256:" + "ab" * 32


def kustomize_tree(root: Path, entries: int) -> Path:
    """A kustomize package of exactly ``entries`` entries: kustomization.yaml, f/, and empty files in f/."""
    (root / "f").mkdir(parents=True)
    (root / "kustomization.yaml").write_text("resources: []\n")
    for i in range(entries - 2):
        (root / "f" / f"{i:05}.yaml").touch()
    return root


def build_argv(tree: Path, out: Path) -> list:
    return ["build", "--sha", SHA, "--image", "ghcr.io/acme/app", "--image-digest", IMAGE_DIGEST, "--source-repository", SOURCE,
            "--package-kind", "kustomize", "--package-path", tree, "--output", out, "--created", "2026-11-20T10:11:12Z", "--json"]


def test_build_takes_a_package_up_to_the_limit_and_refuses_one_more(run_cli, tmp_path):
    tree = kustomize_tree(tmp_path / "at-limit", PACKAGE_LIMIT)
    proc = run_cli(*build_argv(tree, tmp_path / "ok"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["fileCount"] == PACKAGE_LIMIT - 1

    (tree / "f" / "one-more.yaml").touch()
    proc = run_cli(*build_argv(tree, tmp_path / "over"))
    assert proc.returncode == 2, proc.stderr
    assert f"package: {PACKAGE_LIMIT + 1} entries (files and directories)" in proc.stderr, proc.stderr
    assert f"at most {PACKAGE_LIMIT}" in proc.stderr and f"{LIMIT} entries" in proc.stderr, proc.stderr
    assert not (tmp_path / "over").exists()


def test_publish_refuses_it_before_pushing_anything(registry, repo_name, run_cli, tmp_path, fault_proxy):
    proxy = fault_proxy(registry)
    tree = kustomize_tree(tmp_path / "over", PACKAGE_LIMIT + 1)
    proc = run_cli("publish", "--sha", SHA, "--image", f"{proxy.host}/{repo_name}", "--image-digest", IMAGE_DIGEST,
                   "--source-repository", SOURCE, "--package-kind", "kustomize", "--package-path", tree,
                   "--created", "2026-11-20T10:11:12Z")
    assert proc.returncode == 2, proc.stderr
    assert f"package: {PACKAGE_LIMIT + 1} entries" in proc.stderr, proc.stderr
    assert [e for e in proxy.log if e.method not in ("GET", "HEAD")] == [], "nothing was pushed"


@pytest.fixture(scope="module")
def crowded_layer() -> bytes:
    """A complete capsule whose layer holds 10,001 entries."""
    files = dict(sample_capsule_files())
    entries = len(files) + len({"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)})
    for i in range(LIMIT + 1 - entries - 1):  # the "extra" directory is one more entry
        files[f"package/helm/extra/{i:05}"] = b""
    return build_layer(files, level=1)


TAG = f"git-{SAMPLE_SHA}"
NAME = "acme/shop-release-capsule"


@pytest.mark.parametrize("command", ["pull", "verify"])
def test_pull_and_verify_refuse_it_while_unpacking(evil_registry, run_cli, tmp_path, crowded_layer, command):
    digest = evil_registry.add_capsule(NAME, TAG, crowded_layer)
    out = tmp_path / "out"
    ref = evil_registry.ref(NAME, digest)
    if command == "pull":
        proc = run_cli("pull", "--capsule", ref, "--output", out)
    else:
        proc = run_cli("verify", "--capsule", ref, "--image", f"{evil_registry.host}/acme/shop:{TAG}", "--output", out)
    assert proc.returncode == 1, proc.stderr
    assert f"holds more than {LIMIT} entries (files and directories)" in proc.stderr, proc.stderr
    assert not out.exists() or list(out.iterdir()) == []


def test_serve_refuses_it_while_unpacking(evil_registry, serve, crowded_layer):
    digest = evil_registry.add_capsule(NAME, TAG, crowded_layer)
    s = serve("--allow", f"{evil_registry.host}/acme/*")
    body = json.dumps({"image": {"repoURL": f"{evil_registry.host}/acme/shop", "tag": TAG},
                       "capsule": {"repoURL": f"{evil_registry.host}/{NAME}", "digest": digest}}).encode()
    status, answer = s.verify(body)
    assert status == 422, answer
    layer = next(f for f in answer["failures"] if f["field"] == "layer archive")
    assert f"holds more than {LIMIT} entries" in layer["actual"], answer
