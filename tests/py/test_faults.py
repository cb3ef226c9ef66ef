"""`publish` when the registry misbehaves: injected 503/429 (some with
Retry-After), dropped connections, registries that never recover, and no
registry at all. The fault proxy decides before forwarding, so the registry
behind it only ever sees the requests that got through.
"""

from __future__ import annotations

import json
import math

from harness import free_port
from harness.registry import Registry

import image_layouts as il
from publish_support import TAG, capsule_repo, publish_argv, result_json

MiB = 1024 * 1024
CHUNK = 4 * MiB


def all_blobs(client, repo: str, manifest_digest: str) -> dict[str, bytes]:
    """Every manifest and blob under ``manifest_digest`` in ``repo``, by digest."""
    out: dict[str, bytes] = {}
    todo = [manifest_digest]
    while todo:
        d = todo.pop()
        m = client.get_manifest(repo, d)
        assert m.status == 200, (repo, d, m)
        out[d] = m.body
        doc = json.loads(m.body)
        todo += [c["digest"] for c in doc.get("manifests", [])]
        for b in [doc["config"], *doc["layers"]] if "config" in doc else []:
            got = client.get_blob(repo, b["digest"])
            assert got.status == 200, (repo, b)
            out[b["digest"]] = got.body
    return out


def point_proxy_at(proxy, reg: Registry) -> None:
    proxy.upstream_host = reg.host
    proxy.upstream_url = f"http://{reg.host}"


def test_publish_through_faults_pushes_the_same_bytes_as_a_clean_run(registry, repo_name, run_cli, tmp_path, fault_proxy):
    # Multi-arch, one layer over two 4 MiB chunks: manifests, an index and chunked uploads.
    layout = il.multi_arch(tmp_path / "image", tag=TAG, layer_sizes=[9 * MiB + 3, 1000])
    # One proxy for both runs, so both publish under the same registry name
    # (it is inside release.yaml) and the capsules must come out byte-identical.
    proxy = fault_proxy(registry)
    image = f"{proxy.host}/{repo_name}"
    clean = result_json(run_cli(publish_argv(image, "--image-layout", layout.path)))
    assert proxy.faults_injected == 0

    with Registry() as other:
        point_proxy_at(proxy, other)
        proxy.reset()
        proxy.fault_rate, proxy.drop_rate = 0.3, 0.05
        proxy.retry_after_choices = (None, "0", "1")

        faulty = result_json(run_cli(publish_argv(image, "--image-layout", layout.path), timeout=600))

        assert proxy.faults_injected > 0
        assert faulty["published"] is True and faulty["imagePushed"] is True
        assert (faulty["digest"], faulty["imageDigest"]) == (clean["digest"], clean["imageDigest"])
        assert faulty["httpRequests"] == proxy.requests_seen, "every try counts, faulted or not"
        a, b = registry.client(), other.client()
        assert b.manifest_digest(repo_name, TAG) == a.manifest_digest(repo_name, TAG) == layout.digest
        assert b.manifest_digest(capsule_repo(repo_name), TAG) == clean["digest"]
        for repo, root in ((repo_name, layout.digest), (capsule_repo(repo_name), clean["digest"])):
            pushed_clean, pushed_faulty = all_blobs(a, repo, root), all_blobs(b, repo, root)
            assert pushed_faulty.keys() == pushed_clean.keys()
            for digest, data in pushed_faulty.items():
                assert il.digest_of(data) == digest and data == pushed_clean[digest]


def test_a_failed_chunk_is_sent_again_and_only_once_accepted(registry, repo_name, run_cli, tmp_path, fault_proxy):
    size = 3 * CHUNK + 12345
    layout = il.single_arch(tmp_path / "image", layer_sizes=[size])
    proxy = fault_proxy(registry, fault_rate=0.5, seed=3, should_fault=lambda method, path: method == "PATCH")

    out = result_json(run_cli(publish_argv(f"{proxy.host}/{repo_name}", "--image-layout", layout.path)))

    faulted = proxy.entries("PATCH")
    forwarded = [e for e in faulted if e.fault is None]
    assert len(faulted) > len(forwarded), "some PATCHes were faulted"
    manifest = json.loads(registry.client().get_manifest(repo_name, layout.digest).body)
    layer_size = manifest["layers"][0]["size"]
    assert len(forwarded) == math.ceil(layer_size / CHUNK), "each chunk reached the registry exactly once"
    assert all(e.status == 202 for e in forwarded)
    layer = registry.client().get_blob(repo_name, manifest["layers"][0]["digest"]).body
    assert il.digest_of(layer) == manifest["layers"][0]["digest"]
    assert out["imageDigest"] == layout.digest


def test_retry_after_is_honoured(registry, repo_name, run_cli, tmp_path, fault_proxy):
    layout = il.single_arch(tmp_path / "image")
    proxy = fault_proxy(
        registry, fault_rate=1.0, max_faults=1, fault_statuses=(429,), retry_after_choices=("2",),
        should_fault=lambda method, path: method == "HEAD" and "/manifests/" in path,
    )

    result_json(run_cli(publish_argv(f"{proxy.host}/{repo_name}", "--image-layout", layout.path)))

    faulted = [i for i, e in enumerate(proxy.log) if e.fault is not None]
    assert len(faulted) == 1
    first = proxy.log[faulted[0]]
    second = next(e for e in proxy.log[faulted[0] + 1:] if (e.method, e.path) == (first.method, first.path))
    assert (first.fault, first.status, first.retry_after) == ("status", 429, "2")
    assert second.fault is None
    # A lower bound only: the client must not come back before it was told to.
    assert second.time - first.time >= 1.9


def test_a_registry_that_always_fails_is_a_network_error_and_no_tag_appears(registry, repo_name, run_cli, tmp_path, fault_proxy):
    layout = il.single_arch(tmp_path / "image")
    proxy = fault_proxy(registry, always_fail=True)

    proc = run_cli(publish_argv(f"{proxy.host}/{repo_name}", "--image-layout", layout.path), timeout=300)

    assert proc.returncode == 3, proc.stderr
    assert "no usable answer after 10 attempts (last: HTTP 503)" in proc.stderr, proc.stderr
    assert "re-run" in proc.stderr
    # The image and the capsule tag are resolved together: two calls, ten tries each.
    assert proxy.requests_seen == 20, "a bounded number of tries"
    client = registry.client()
    assert client.tags(repo_name) == [] and client.tags(capsule_repo(repo_name)) == []


def test_failing_capsule_manifest_puts_leave_no_capsule_tag_and_a_rerun_finishes(registry, repo_name, run_cli, tmp_path, fault_proxy):
    layout = il.single_arch(tmp_path / "image")
    proxy = fault_proxy(
        registry, fault_rate=1.0,
        should_fault=lambda method, path: method == "PUT" and path.endswith(f"-release-capsule/manifests/{TAG}"),
    )
    image = f"{proxy.host}/{repo_name}"

    proc = run_cli(publish_argv(image, "--image-layout", layout.path), timeout=300)

    assert proc.returncode == 3, proc.stderr
    client = registry.client()
    assert client.manifest_digest(repo_name, TAG) == layout.digest, "the image is complete on its own"
    # (Only the claim register of the run, src/commands/publish/claim.rs.)
    assert [t for t in client.tags(capsule_repo(repo_name)) if not t.endswith(".claim")] == [], \
        "no capsule tag without a complete capsule"

    proxy.fault_rate = 0.0
    proxy.reset()
    out = result_json(run_cli(publish_argv(image, "--image-layout", layout.path)))
    assert out["published"] is True and out["imagePushed"] is False
    blob_uploads = [e for e in proxy.log if e.method in ("POST", "PATCH")]
    assert blob_uploads == [], "the capsule's blobs were already there from the failed run"
    assert client.manifest_digest(capsule_repo(repo_name), TAG) == out["digest"]


def test_an_unreachable_registry_is_a_network_error(run_cli, tmp_path):
    layout = il.single_arch(tmp_path / "image")
    port = free_port()  # nothing listens there

    proc = run_cli(publish_argv(f"127.0.0.1:{port}/acme/app", "--image-layout", layout.path), timeout=300)

    assert proc.returncode == 3, proc.stderr
    assert f"127.0.0.1:{port}" in proc.stderr and "no usable answer after 10 attempts" in proc.stderr
    assert "Connection refused" in proc.stderr or "connection refused" in proc.stderr.lower()
