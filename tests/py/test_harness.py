"""Tests of the test harness itself: if these fail, integration failures mean nothing.

None of these need the release-capsule binary (``bin_path`` is replaced by a
shell script in this module).
"""

from __future__ import annotations

import fcntl
import gzip
import http.client
import io
import json
import os
import socket
import subprocess
import tarfile
import time
import zlib
from pathlib import Path

import pytest

from harness.evil_registry import (
    CAPSULE_ARTIFACT_TYPE,
    CAPSULE_LAYER_TYPE,
    EMPTY_CONFIG,
    EMPTY_CONFIG_DIGEST,
    EVIL_KINDS,
    GiB,
    SAMPLE_SHA,
    build_layer,
    capsule_annotations,
    capsule_manifest,
    evil_layer,
    lying_size_layer,
    ordered_entries,
    package_tree_digest,
    sample_capsule_files,
    sha256_digest,
    write_oci_layout,
)
from harness.fake_github import FakeGitHub
from harness.registry import OciClient, Registry, RegistryStartError

HEAD_SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"


# -- helpers -------------------------------------------------------------------

def http_request(url_host: str, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None, timeout: float = 10):
    """One request on a fresh connection: (status, headers, body)."""
    conn = http.client.HTTPConnection(url_host, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def skopeo_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "skopeo-home"
    home.mkdir(exist_ok=True)
    return {"PATH": os.environ["PATH"], "HOME": str(home)}


def capsule_layout(tmp_path: Path, tag: str) -> tuple[Path, bytes, bytes, str]:
    """(layout dir, manifest, layer, manifest digest) for the sample capsule."""
    layer = build_layer(sample_capsule_files())
    manifest = capsule_manifest(layer, annotations=capsule_annotations())
    layout = tmp_path / "layout"
    digest = write_oci_layout(layout, manifest, [EMPTY_CONFIG, layer], tag)
    return layout, manifest, layer, digest


@pytest.fixture(scope="session")
def bin_path(tmp_path_factory) -> Path:
    """Stand-in binary: echoes its arguments and environment, exits 3."""
    script = tmp_path_factory.mktemp("bin") / "release-capsule"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\nenv | sort >&2\nexit 3\n')
    script.chmod(0o755)
    return script


# -- registry --------------------------------------------------------------------

def test_registry_without_auth_answers(registry):
    assert registry.host.startswith("127.0.0.1:") and registry.url == f"http://{registry.host}"
    status, headers, _ = http_request(registry.host, "GET", "/v2/")
    assert status == 200
    assert headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert registry.log_path.is_file()
    assert registry.username is None and registry.password is None


def test_skopeo_copies_capsule_layout_unchanged(registry, repo_name, tmp_path, skopeo):
    tag = f"git-{SAMPLE_SHA}"
    layout, manifest, layer, digest = capsule_layout(tmp_path, tag)
    result = subprocess.run(
        [skopeo, "copy", "--dest-tls-verify=false", f"oci:{layout}:{tag}",
         f"docker://{registry.ref(repo_name, tag)}"],
        capture_output=True, text=True, timeout=60, env=skopeo_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    client = registry.client()
    got = client.get_manifest(repo_name, tag)
    assert got.status == 200
    # CAPSULE-SPEC section 6: skopeo publishes the layout unchanged, same digest.
    assert got.body == manifest
    assert got.headers["Docker-Content-Digest"] == digest
    assert client.get_blob(repo_name, sha256_digest(layer)).body == layer
    assert client.get_blob(repo_name, EMPTY_CONFIG_DIGEST).body == b"{}"


def test_registry_quirk_oci_manifest_needs_accept_header(registry, repo_name):
    layer = build_layer(sample_capsule_files())
    client = registry.client()
    client.push_artifact(repo_name, "t", capsule_manifest(layer), [EMPTY_CONFIG, layer])
    plain = client.request("GET", f"/v2/{repo_name}/manifests/t")
    # distribution 2.8 hides OCI manifests from clients that do not accept them.
    assert plain.status == 404
    assert b"accept header does not support OCI manifests" in plain.body
    assert client.get_manifest(repo_name, "t").status == 200


def test_registry_refuses_manifest_before_blobs(registry, repo_name):
    layer = build_layer(sample_capsule_files())
    with pytest.raises(RuntimeError, match="MANIFEST_BLOB_UNKNOWN|blob unknown"):
        registry.client().push_manifest(repo_name, "t", capsule_manifest(layer))


def test_auth_registry_rejects_missing_and_wrong_credentials(auth_registry, repo_name, tmp_path, skopeo):
    anonymous = auth_registry.client(authenticated=False)
    r = anonymous.request("GET", "/v2/")
    assert r.status == 401
    assert r.headers["WWW-Authenticate"] == f'Basic realm="{auth_registry.realm}"'
    assert OciClient(auth_registry.url, auth_registry.username, "wrong").request("GET", "/v2/").status == 401
    assert auth_registry.client().request("GET", "/v2/").status == 200

    tag = "git-" + SAMPLE_SHA
    layout, manifest, _, _ = capsule_layout(tmp_path, tag)
    dest = f"docker://{auth_registry.ref(repo_name, tag)}"
    cmd = [skopeo, "copy", "--dest-tls-verify=false", f"oci:{layout}:{tag}", dest]
    denied = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=skopeo_env(tmp_path))
    assert denied.returncode != 0
    creds = f"--dest-creds={auth_registry.username}:{auth_registry.password}"
    ok = subprocess.run(cmd[:2] + [creds] + cmd[2:], capture_output=True, text=True,
                        timeout=60, env=skopeo_env(tmp_path))
    assert ok.returncode == 0, ok.stderr
    assert auth_registry.client().get_manifest(repo_name, tag).body == manifest


def test_registry_stop_removes_everything():
    reg = Registry().start()
    tmpdir, host = reg.tmpdir, reg.host
    assert reg.running
    reg.stop()
    assert not reg.running
    assert not tmpdir.exists()
    with pytest.raises(OSError):
        socket.create_connection(tuple(host.split(":")), timeout=1).close()


def test_registry_start_failure_reports_log_tail():
    class BrokenConfig(Registry):
        def _write_config(self):
            self.config_path.write_text("storage: {nonexistent_driver: {}}\n")

    reg = BrokenConfig(start_timeout=5)
    with pytest.raises(RegistryStartError) as err:
        reg.start()
    message = str(err.value)
    assert "exited" in message and "registry.log" in message
    assert "nonexistent_driver" in message or "version" in message  # the log tail
    assert not reg.tmpdir.exists()


# -- fault proxy -------------------------------------------------------------------

def test_proxy_forwards_everything_when_not_faulting(registry, fault_proxy, repo_name):
    proxy = fault_proxy(registry)
    assert http_request(proxy.host, "GET", "/v2/")[0] == 200

    # Chunked upload: POST, PATCH with Content-Range (sent chunked), PUT ?digest=.
    data = os.urandom(300_000)
    digest = sha256_digest(data)
    status, headers, _ = http_request(proxy.host, "POST", f"/v2/{repo_name}/blobs/uploads/", b"")
    assert status == 202
    location = headers["Location"]
    # The registry built an upstream URL; the proxy must point it back at itself.
    assert location.startswith(proxy.url + "/v2/"), location
    first, second = data[:200_000], data[200_000:]

    conn = http.client.HTTPConnection(proxy.host, timeout=10)
    conn.request("PATCH", location[len(proxy.url):], body=iter([first[:70_000], first[70_000:]]),
                 headers={"Content-Type": "application/octet-stream",
                          "Content-Range": f"0-{len(first) - 1}"},
                 encode_chunked=True)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status == 202, resp.status
    assert resp.headers["Range"] == f"0-{len(first) - 1}"
    location = resp.headers["Location"]
    assert location.startswith(proxy.url)

    status, headers, _ = http_request(
        proxy.host, "PUT", f"{location[len(proxy.url):]}&digest={digest}", second,
        {"Content-Type": "application/octet-stream"},
    )
    assert status == 201
    assert headers["Docker-Content-Digest"] == digest

    # HEAD: headers (with the real Content-Length) and no body.
    status, headers, body = http_request(proxy.host, "HEAD", f"/v2/{repo_name}/blobs/{digest}")
    assert (status, body, headers["Content-Length"]) == (200, b"", str(len(data)))
    # The blob really is upstream, byte for byte.
    assert registry.client().get_blob(repo_name, digest).body == data
    assert proxy.faults_injected == 0
    assert [(e.method, e.status) for e in proxy.log] == [
        ("GET", 200), ("POST", 202), ("PATCH", 202), ("PUT", 201), ("HEAD", 200)]


def test_real_client_pushes_through_the_proxy(auth_registry, fault_proxy, repo_name, tmp_path, skopeo):
    # Go's client reuses connections and streams PATCH bodies chunked.
    proxy = fault_proxy(auth_registry)
    layout, manifest, _, _ = capsule_layout(tmp_path, "t")
    result = subprocess.run(
        [skopeo, "copy", "--dest-tls-verify=false",
         f"--dest-creds={auth_registry.username}:{auth_registry.password}",
         f"oci:{layout}:t", f"docker://{proxy.host}/{repo_name}:t"],
        capture_output=True, text=True, timeout=60, env=skopeo_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert auth_registry.client().get_manifest(repo_name, "t").body == manifest
    assert ("PUT", 201) in [(e.method, e.status) for e in proxy.entries(path_contains="/manifests/")]


def test_proxy_passes_auth_both_ways(auth_registry, fault_proxy):
    proxy = fault_proxy(auth_registry)
    r = OciClient(proxy.url).request("GET", "/v2/")
    assert r.status == 401
    assert r.headers["WWW-Authenticate"] == f'Basic realm="{auth_registry.realm}"'
    assert OciClient(proxy.url, auth_registry.username, auth_registry.password).request(
        "GET", "/v2/").status == 200


def _outcomes(proxy, n: int) -> list[tuple[object, str | None]]:
    out = []
    for _ in range(n):
        try:
            status, headers, _ = http_request(proxy.host, "GET", "/v2/", timeout=5)
            out.append((status, headers.get("Retry-After")))
        except (ConnectionError, http.client.HTTPException, OSError):
            out.append(("dropped", None))
    return out


def test_proxy_injects_reproducible_faults(evil_registry, fault_proxy):
    proxy = fault_proxy(evil_registry, fault_rate=0.3, drop_rate=0.1, seed=1234)
    outcomes = _outcomes(proxy, 200)
    statuses = [s for s, _ in outcomes]
    faults = [s for s in statuses if s != 200]
    assert proxy.requests_seen == 200
    assert proxy.faults_injected == len(faults)
    assert proxy.drops == statuses.count("dropped")
    assert set(faults) <= {503, 429, "dropped"} and {503, 429, "dropped"} <= set(faults)
    assert 50 <= len(faults) <= 110  # 40% of 200, with slack for chance
    assert {ra for s, ra in outcomes if s in (503, 429)} == {None, "0", "1"}
    # Faults are decided before forwarding: the upstream saw exactly the rest.
    assert len(evil_registry.requests) == proxy.forwarded == statuses.count(200)
    assert [e.status for e in proxy.log] == [None if s == "dropped" else s for s in statuses]

    # The same seed gives the same pattern.
    again = fault_proxy(evil_registry, fault_rate=0.3, drop_rate=0.1, seed=1234)
    assert [s for s, _ in _outcomes(again, 200)] == statuses


def test_proxy_fault_filter_and_always_fail(evil_registry, fault_proxy):
    proxy = fault_proxy(evil_registry, fault_rate=1.0, should_fault=lambda m, p: m == "HEAD")
    assert http_request(proxy.host, "GET", "/v2/")[0] == 200
    assert http_request(proxy.host, "HEAD", "/v2/")[0] in (503, 429)

    proxy.always_fail = True
    proxy.reset()
    before = len(evil_registry.requests)
    assert [http_request(proxy.host, m, "/v2/")[0] for m in ("GET", "HEAD", "GET")] == [503] * 3
    assert proxy.faults_injected == 3 and proxy.forwarded == 0
    assert len(evil_registry.requests) == before


def test_proxy_drains_body_before_faulting(evil_registry, fault_proxy):
    proxy = fault_proxy(evil_registry, always_fail=True)
    # A large body is read and discarded, so the client sees the 503 (not a reset).
    status, headers, body = http_request(proxy.host, "PUT", "/v2/x/blobs/uploads/u?digest=sha256:00",
                                         os.urandom(4 << 20))
    assert status == 503
    assert json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"


def test_proxy_sends_html_502s_cuts_answers_off_and_stalls(evil_registry, fault_proxy):
    layer = build_layer(sample_capsule_files())
    digest = evil_registry.add_blob(layer)
    path = f"/v2/x/blobs/{digest}"
    proxy = fault_proxy(evil_registry, fault_rate=1.0, fault_statuses=(502,))
    status, headers, body = http_request(proxy.host, "GET", path)
    assert (status, headers["Content-Type"]) == (502, "text/html") and body.startswith(b"<html>"), body
    proxy.fault_rate, proxy.cut_rate = 0.0, 1.0
    with pytest.raises(http.client.IncompleteRead) as cut:
        http_request(proxy.host, "GET", path)
    assert len(cut.value.partial) == len(layer) // 2, "half the body, then the connection ends"
    assert http_request(proxy.host, "HEAD", path)[0] == 200, "only a GET's answer is cut"
    proxy.cut_rate, proxy.stall_rate, proxy.stall_seconds = 0.0, 1.0, 0.5
    started = time.monotonic()
    assert http_request(proxy.host, "GET", path)[2] == layer, "a stall answers in the end"
    assert time.monotonic() - started >= 0.5
    assert proxy.faults_by_kind() == {"502-html": 1, "cut": 1, "stall": 1}


# -- evil registry and builders ---------------------------------------------------

def test_evil_registry_serves_what_it_is_given(evil_registry, tmp_path, skopeo):
    layer = evil_layer("dotdot")
    tag = "git-" + SAMPLE_SHA
    digest = evil_registry.add_capsule("acme/capsule", tag, layer)
    client = OciClient(evil_registry.url)
    assert client.request("GET", "/v2/").status == 200
    for ref in (tag, digest):
        r = client.get_manifest("acme/capsule", ref)
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/vnd.oci.image.manifest.v1+json"
        assert r.headers["Docker-Content-Digest"] == digest == sha256_digest(r.body)
    head = client.head_manifest("acme/capsule", tag)
    assert (head.status, head.body, head.headers["Content-Length"]) == (200, b"", str(len(r.body)))
    assert client.get_blob("acme/capsule", sha256_digest(layer)).body == layer
    assert client.tags("acme/capsule") == [tag]
    assert client.get_manifest("acme/capsule", "nope").status == 404
    assert client.get_blob("acme/capsule", "sha256:" + "0" * 64).status == 404
    assert client.request("PUT", "/v2/acme/capsule/manifests/x", b"{}").status == 405

    # Lies on request.
    wrong = "sha256:" + "1" * 64
    evil_registry.add_blob_with_digest(b"not what the digest says", wrong)
    assert client.get_blob("x", wrong).body == b"not what the digest says"
    evil_registry.add_manifest("acme/liar", "t", b'{"schemaVersion":2}', digest=wrong)
    r = client.get_manifest("acme/liar", wrong)
    assert r.headers["Docker-Content-Digest"] == wrong != sha256_digest(r.body)

    # A real client can read it.
    raw = subprocess.run(
        [skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{evil_registry.ref('acme/capsule', tag)}"],
        capture_output=True, timeout=30, env=skopeo_env(tmp_path),
    )
    assert raw.returncode == 0, raw.stderr
    assert sha256_digest(raw.stdout.rstrip(b"\n")) == digest


def test_valid_layer_follows_section_2(tmp_path):
    files = sample_capsule_files()
    layer = build_layer(files)
    # gzip header: mtime 0 (bytes 4-8), FLG 0 (no name, no comment).
    assert layer[:4] == b"\x1f\x8b\x08\x00" and layer[4:8] == b"\0\0\0\0"
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == [
            "metadata", "metadata/provenance.json", "metadata/sbom.json", "package",
            "package/helm", "package/helm/Chart.yaml", "package/helm/templates",
            "package/helm/templates/configmap.yaml", "package/helm/values.yaml", "release.yaml",
        ]
        for m in members:
            assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0)
            assert m.mode == (0o755 if m.isdir() else 0o644)
            assert m.isdir() or m.isfile()
        # By hand: Debian 12's Python 3.11.2 has no tarfile extraction filters.
        for m in members:
            target = tmp_path / "out" / m.name
            if m.isdir():
                target.mkdir(parents=True)
            else:
                target.write_bytes(tar.extractfile(m).read())
    assert (tmp_path / "out" / "release.yaml").read_bytes() == files["release.yaml"]

    # The package digest in release.yaml is what the spec's coreutils recipe prints.
    recipe = ("cd package/helm && find . -type f -printf '%P\\n' | LC_ALL=C sort "
              "| xargs -d '\\n' sha256sum | sha256sum")
    out = subprocess.run(["bash", "-c", recipe], cwd=tmp_path / "out", capture_output=True,
                         text=True, check=True).stdout.split()[0]
    assert package_tree_digest(files) == "sha256:" + out
    assert f'digest: "sha256:{out}"' in files["release.yaml"].decode()


def test_builders_order_and_overrides():
    assert [p for p, _ in ordered_entries({"a-b/x": b"", "a/x": b"", "a.txt": b""})] == [
        "a", "a/x", "a-b", "a-b/x", "a.txt"]
    files = sample_capsule_files(release_overrides={"image.tag": "git-other", "created": None})
    text = files["release.yaml"].decode()
    assert 'tag: "git-other"' in text and "created:" not in text
    long_name = "package/helm/templates/" + "x" * 150 + ".yaml"
    with tarfile.open(fileobj=io.BytesIO(build_layer({long_name: b"a"}))) as tar:
        assert tar.getnames()[-1] == long_name


@pytest.mark.parametrize("kind", EVIL_KINDS)
def test_evil_layers_carry_the_forbidden_entry(kind, tmp_path):
    outside = str(tmp_path / "outside")
    with tarfile.open(fileobj=io.BytesIO(evil_layer(kind, outside=outside))) as tar:
        members = tar.getmembers()
    valid_count = len(ordered_entries(sample_capsule_files()))
    evil = members[valid_count:]
    assert evil, "no malicious entry appended"
    m = evil[-1]
    check = {
        "dotdot": lambda: ".." in m.name.split("/"),
        "dotdot-leading": lambda: m.name.startswith("../"),
        "absolute": lambda: m.name == outside + "/absolute.txt",
        "dot-slash": lambda: m.name.startswith("./"),
        "backslash": lambda: "\\" in m.name,
        "symlink": lambda: m.issym() and m.linkname == "/etc/passwd",
        "symlink-relative-escape": lambda: m.issym() and m.linkname.startswith("../"),
        "symlink-then-write": lambda: evil[0].issym() and evil[0].linkname == outside and m.isfile(),
        "hardlink": lambda: m.islnk(),
        "hardlink-internal": lambda: m.islnk() and m.linkname == "release.yaml",
        "chardev": lambda: m.ischr(),
        "blockdev": lambda: m.isblk(),
        "fifo": lambda: m.isfifo(),
    }[kind]
    assert check(), (kind, m.name, m.type, m.linkname)


def test_gzip_bomb_is_small_but_huge(gzip_bomb):
    assert len(gzip_bomb) < 2 * 1024 * 1024
    # The gzip trailer's ISIZE is the uncompressed length (mod 2^32): over 1 GiB.
    assert int.from_bytes(gzip_bomb[-4:], "little") > GiB
    # The member's header, read from the first decompressed bytes, claims 1 GiB.
    head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(gzip_bomb, 64 * 1024)
    offset = head.index(b"package/helm/templates/bomb.yaml\0")
    assert int(head[offset + 124:offset + 136].rstrip(b"\0 "), 8) == GiB


def test_lying_size_layers():
    more = gzip.decompress(lying_size_layer(claimed=4096, actual=10))
    less = gzip.decompress(lying_size_layer(claimed=10, actual=4096))
    for raw, claimed, actual in ((more, 4096, 10), (less, 10, 4096)):
        offset = raw.index(b"package/helm/templates/liar.yaml")
        header = raw[offset:offset + 512]
        assert int(header[124:136].rstrip(b"\0 ") or b"0", 8) == claimed
        assert raw[offset + 512:offset + 512 + actual] == b"L" * actual
        assert raw.endswith(b"\0" * 1024)
    with pytest.raises(tarfile.ReadError):
        with tarfile.open(fileobj=io.BytesIO(more)) as tar:
            for m in tar:
                if m.isfile():
                    tar.extractfile(m).read()


def test_capsule_manifest_matches_section_5(registry, repo_name):
    layer = build_layer(sample_capsule_files())
    annotations = capsule_annotations()
    raw = capsule_manifest(layer, annotations=dict(reversed(list(annotations.items()))))
    assert b" " not in raw.replace(b"https://", b"")  # compact
    m = json.loads(raw)
    assert list(m) == ["schemaVersion", "mediaType", "artifactType", "config", "layers", "annotations"]
    assert m["artifactType"] == CAPSULE_ARTIFACT_TYPE
    assert m["config"] == {"mediaType": "application/vnd.oci.empty.v1+json",
                           "digest": EMPTY_CONFIG_DIGEST, "size": 2}
    assert m["layers"] == [{
        "mediaType": CAPSULE_LAYER_TYPE, "digest": sha256_digest(layer), "size": len(layer),
        "annotations": {"org.opencontainers.image.title": "release-capsule.tar.gz"},
    }]
    assert list(m["annotations"]) == sorted(annotations)
    assert "subject" not in m
    # A real registry takes it and keeps the bytes (so the digest) as they are.
    digest = registry.client().push_artifact(repo_name, "t", raw, [EMPTY_CONFIG, layer])
    assert digest == sha256_digest(raw)
    assert registry.client().get_manifest(repo_name, digest).body == raw


# -- fake GitHub ---------------------------------------------------------------------

GH_HEADERS = {
    "Authorization": "Bearer ghs_test",
    "User-Agent": "release-capsule-tests",
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
    "Content-Type": "application/json",
}


def gh(fake: FakeGitHub, method: str, path: str, body=None, headers=None):
    """(status, headers, parsed body)."""
    raw = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    status, resp_headers, resp_body = http_request(
        fake.host, method, path, raw, GH_HEADERS if headers is None else headers)
    return status, resp_headers, json.loads(resp_body) if resp_body else None


def test_fake_github_happy_path_and_response_schemas(fake_github):
    status, _, created = gh(fake_github, "POST", "/repos/acme/shop/check-runs", {
        "name": "release-capsule", "head_sha": HEAD_SHA, "status": "in_progress",
        "started_at": "2026-11-20T10:11:12Z", "details_url": "https://example.test/run/1",
    })
    assert status == 201, created
    assert created["status"] == "in_progress" and created["head_sha"] == HEAD_SHA
    assert created["id"] > 2**32  # ids do not fit in 32 bits on real GitHub either
    fake_github.response_validators["checks/create"].validate(created)

    status, _, updated = gh(fake_github, "PATCH", f"/repos/acme/shop/check-runs/{created['id']}", {
        "conclusion": "success",
        "output": {"title": "Capsule published", "summary": "digest sha256:…",
                   "annotations": [{"path": "Chart.yaml", "start_line": 1, "end_line": 1,
                                    "annotation_level": "notice", "message": "ok"}]},
    })
    assert status == 200, updated
    fake_github.response_validators["checks/update"].validate(updated)
    assert updated["status"] == "completed" and updated["completed_at"]
    assert updated["output"]["annotations_count"] == 1

    status, _, st = gh(fake_github, "POST", f"/repos/acme/shop/statuses/{HEAD_SHA}", {
        "state": "success", "context": "release-capsule", "description": "published",
        "target_url": None,
    })
    assert status == 201, st
    fake_github.response_validators["repos/create-commit-status"].validate(st)

    status, _, got = gh(fake_github, "GET", f"/repos/acme/shop/check-runs/{created['id']}")
    assert status == 200 and got == updated

    [run] = fake_github.check_runs()
    assert (run["owner"], run["repo"], run["name"], run["conclusion"]) == (
        "acme", "shop", "release-capsule", "success")
    assert run["output"]["title"] == "Capsule published"
    assert len(run["requests"]) == 2 and len(run["annotations"]) == 1
    [status_obj] = fake_github.statuses()
    assert (status_obj["sha"], status_obj["state"], status_obj["context"]) == (
        HEAD_SHA, "success", "release-capsule")
    calls = fake_github.calls
    assert [(c.method, c.operation, c.status) for c in calls] == [
        ("POST", "checks/create", 201), ("PATCH", "checks/update", 200),
        ("POST", "repos/create-commit-status", 201), ("GET", "checks/get", 200)]
    assert calls[0].authorization == "Bearer ghs_test"
    assert calls[0].headers["x-github-api-version"] == "2022-11-28"
    assert calls[0].body["name"] == "release-capsule"
    fake_github.assert_clean()


@pytest.mark.parametrize("path, body, kind, fragment", [
    ("/repos/a/b/check-runs", {"name": "x"}, "schema", "'head_sha' is a required property"),
    ("/repos/a/b/check-runs", {"name": "x", "head_sha": HEAD_SHA, "status": "done"}, "schema", "status"),
    ("/repos/a/b/check-runs", {"name": "x", "head_sha": HEAD_SHA, "status": "completed"}, "schema", ""),
    ("/repos/a/b/check-runs", {"name": "x", "head_sha": HEAD_SHA, "started_at": "yesterday"},
     "schema", "date-time"),
    ("/repos/a/b/check-runs", {"name": "x", "head_sha": HEAD_SHA,
                               "output": {"title": "t", "summary": "s" * 65536}}, "schema", "long"),
    ("/repos/a/b/check-runs", {"name": "x", "head_sha": "main"}, "semantic", "No commit found"),
    ("/repos/a/b/check-runs", {"name": "x", "head_sha": HEAD_SHA, "status": "completed",
                               "conclusion": "stale"}, "semantic", "stale"),
    ("/repos/a/b/check-runs", {"name": "x", "head_sha": HEAD_SHA,
                               "completed_at": "2026-11-20T10:11:12Z"}, "semantic", "conclusion"),
    (f"/repos/a/b/statuses/{HEAD_SHA}", {"state": "passed"}, "schema", "state"),
    (f"/repos/a/b/statuses/{HEAD_SHA}", {"state": "success", "description": "d" * 141},
     "semantic", "too long"),
    (f"/repos/a/b/statuses/{HEAD_SHA}", b"{not json", "json", "not JSON"),
])
def test_fake_github_rejects_invalid_bodies(fake_github, path, body, kind, fragment):
    status, _, answer = gh(fake_github, "POST", path, body)
    assert status == (400 if kind == "json" else 422), answer
    assert "message" in answer and "documentation_url" in answer
    [error] = fake_github.schema_errors
    assert error["kind"] == kind and fragment in error["message"]
    assert fake_github.check_runs() == [] and fake_github.statuses() == []
    with pytest.raises(AssertionError, match="invalid GitHub API requests"):
        fake_github.assert_clean()


def test_fake_github_update_rules(fake_github):
    _, _, run = gh(fake_github, "POST", "/repos/a/b/check-runs", {"name": "x", "head_sha": HEAD_SHA})
    assert run["status"] == "queued"
    status, _, _ = gh(fake_github, "PATCH", f"/repos/a/b/check-runs/{run['id']}", {"status": "completed"})
    assert status == 422  # completed needs a conclusion
    assert gh(fake_github, "PATCH", "/repos/a/b/check-runs/999", {"status": "in_progress"})[0] == 404
    assert gh(fake_github, "PATCH", f"/repos/other/repo/check-runs/{run['id']}",
              {"status": "in_progress"})[0] == 404
    assert gh(fake_github, "PATCH", f"/repos/a/b/check-runs/{run['id']}", {"conclusion": "failure"})[0] == 200
    assert fake_github.check_runs()[0]["status"] == "completed"


def test_fake_github_auth_and_routing(fake_github):
    body = {"name": "x", "head_sha": HEAD_SHA}
    no_auth = {k: v for k, v in GH_HEADERS.items() if k != "Authorization"}
    status, _, answer = gh(fake_github, "POST", "/repos/a/b/check-runs", body, no_auth)
    assert (status, answer["message"]) == (401, "Requires authentication")
    assert gh(fake_github, "POST", "/repos/a/b/check-runs", body,
              {**GH_HEADERS, "Authorization": "token ghp_x"})[0] == 201
    assert gh(fake_github, "POST", "/repos/a/b/check-runs", body,
              {**GH_HEADERS, "Authorization": "Basic eDp5"})[0] == 401
    no_ua = {k: v for k, v in GH_HEADERS.items() if k != "User-Agent"}
    assert gh(fake_github, "POST", "/repos/a/b/check-runs", body, no_ua)[0] == 403
    status, headers, answer = gh(fake_github, "GET", "/repos/a/b/pulls")
    assert (status, answer["message"]) == (404, "Not Found")
    assert headers["Content-Type"].startswith("application/json")
    assert gh(fake_github, "DELETE", "/repos/a/b/check-runs")[0] == 405
    with pytest.raises(AssertionError, match="401/404"):
        fake_github.assert_clean()

    fake_github.expected_token = "right"
    assert gh(fake_github, "POST", "/repos/a/b/check-runs", body,
              {**GH_HEADERS, "Authorization": "Bearer wrong"})[0] == 401


def test_fake_github_forbidden_mode(fake_github):
    fake_github.mode = "forbidden"
    status, _, answer = gh(fake_github, "POST", f"/repos/a/b/statuses/{HEAD_SHA}", {"state": "pending"})
    assert (status, answer["message"]) == (403, "Resource not accessible by integration")
    assert fake_github.statuses() == []
    assert fake_github.calls[0].body == {"state": "pending"}  # recorded all the same


def test_fake_github_rate_limits(fake_github):
    body = {"name": "x", "head_sha": HEAD_SHA}
    fake_github.rate_limit_first_n = 2
    for _ in range(2):
        status, headers, _ = gh(fake_github, "POST", "/repos/a/b/check-runs", body)
        assert status == 429
        assert headers["Retry-After"] == "1" and headers["x-ratelimit-remaining"] == "0"
        assert int(headers["x-ratelimit-reset"]) >= int(time.time())
    assert fake_github.check_runs() == []
    assert gh(fake_github, "POST", "/repos/a/b/check-runs", body)[0] == 201

    fake_github.secondary_rate_limit_first_n = 1
    status, headers, answer = gh(fake_github, "POST", "/repos/a/b/check-runs", body)
    assert status == 403 and headers["Retry-After"] == "1"
    assert "secondary rate limit" in answer["message"]

    fake_github.fail_next(502, count=1)
    assert gh(fake_github, "POST", "/repos/a/b/check-runs", body)[0] == 502
    assert gh(fake_github, "POST", "/repos/a/b/check-runs", body)[0] == 201
    assert len(fake_github.check_runs()) == 2
    assert [c.status for c in fake_github.writes()] == [429, 429, 201, 403, 502, 201]


# -- helm, environment, run_cli -------------------------------------------------------

def test_fake_github_git_data_is_git_itself(fake_github):
    """The Git Data endpoints write with git plumbing, answer inside GitHub's
    response schemas, and refuse what GitHub refuses."""
    import base64
    repo = fake_github.git.create("acme", "gitops")
    base = "/repos/acme/gitops"
    status, _, ref = gh(fake_github, "GET", f"{base}/git/ref/heads/main")
    assert status == 200
    head = ref["object"]["sha"]
    _, _, commit = gh(fake_github, "GET", f"{base}/git/commits/{head}")
    status, _, blob = gh(fake_github, "POST", f"{base}/git/blobs", {"content": base64.b64encode(b"hello\n").decode(), "encoding": "base64"})
    # `printf 'hello\n' | git hash-object --stdin`
    assert (status, blob["sha"]) == (201, "ce013625030ba8dba906f756967f9e9ca394464a")
    status, _, tree = gh(fake_github, "POST", f"{base}/git/trees", {"base_tree": commit["tree"]["sha"], "tree": [
        {"path": "a/b.txt", "mode": "100644", "type": "blob", "sha": blob["sha"]},
        {"path": "a/c.txt", "mode": "100644", "type": "blob", "content": "inline\n"},
        {"path": "README.md", "mode": "100644", "type": "blob", "sha": None}]})
    assert status == 201, tree
    status, _, listing = gh(fake_github, "GET", f"{base}/git/trees/{tree['sha']}?recursive=1")
    assert [e["path"] for e in listing["tree"]] == ["a", "a/b.txt", "a/c.txt"], "README.md deleted"
    status, _, bad = gh(fake_github, "POST", f"{base}/git/trees", {"base_tree": commit["tree"]["sha"], "tree": [
        {"path": "nothing-here", "mode": "100644", "type": "blob", "sha": None}]})
    assert status == 422, "deleting what the base does not have"
    who = {"name": "a", "email": "a@example.com", "date": "2026-11-20T10:13:00Z"}
    status, _, new = gh(fake_github, "POST", f"{base}/git/commits", {"message": "m\n", "tree": tree["sha"], "parents": [head],
                                                                   "author": who, "committer": who})
    assert status == 201 and new["author"] == who and new["message"] == "m\n"
    status, _, again = gh(fake_github, "POST", f"{base}/git/commits", {"message": "m\n", "tree": tree["sha"], "parents": [head],
                                                                     "author": who, "committer": who})
    assert again["sha"] == new["sha"], "a commit with explicit dates is content-addressed"
    status, _, moved = gh(fake_github, "PATCH", f"{base}/git/refs/heads/main", {"sha": new["sha"], "force": False})
    assert (status, moved["object"]["sha"]) == (200, new["sha"])
    status, _, refused = gh(fake_github, "PATCH", f"{base}/git/refs/heads/main", {"sha": head, "force": False})
    assert (status, refused["message"]) == (422, "Update is not a fast forward")
    assert repo.head("main") == new["sha"]
    status, _, content = gh(fake_github, "GET", f"{base}/contents/a/c.txt?ref=main")
    assert base64.b64decode(content["content"]) == b"inline\n"
    assert gh(fake_github, "GET", "/repos/acme/elsewhere/git/ref/heads/main")[0] == 404
    fake_github.git.grant("acme", "gitops", GH_HEADERS["Authorization"].split()[1], "read")
    assert gh(fake_github, "POST", f"{base}/git/blobs", {"content": "x"})[0] == 403
    assert gh(fake_github, "GET", f"{base}/git/ref/heads/main")[0] == 200
    assert not fake_github.schema_errors and not fake_github.response_errors
    subprocess.run(["git", "--git-dir", str(repo.path), "fsck", "--strict"], check=True, capture_output=True)


def test_helm_chart_fixture_is_a_real_chart(helm_chart):
    import helm_python

    assert (helm_chart / "Chart.yaml").is_file()
    with helm_python.Chart.load(helm_chart) as chart:
        assert chart.metadata["apiVersion"] == "v2"
        assert (chart.name, chart.version) == ("demo", "0.1.0")
        rendered = chart.render({"replicaCount": 2}, name="rel")
    assert "replicas: 2" in rendered["demo/templates/deployment.yaml"]
    assert helm_python.lint(helm_chart)["errors"] == []


def test_run_cli_scrubs_the_environment(monkeypatch, request, tmp_path):
    monkeypatch.setenv("GITHUB_TOKEN", "real-token-must-not-leak")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1")
    run_cli = request.getfixturevalue("run_cli")
    result = run_cli("verify", "--flag", env={"GITHUB_API_URL": "http://127.0.0.1:1", "HOME": None})
    assert result.returncode == 3
    assert result.stdout.splitlines() == ["verify", "--flag"]
    env = dict(line.split("=", 1) for line in result.stderr.splitlines() if "=" in line)
    assert "GITHUB_TOKEN" not in env and "HTTPS_PROXY" not in env and "SOURCE_DATE_EPOCH" not in env
    assert env["GITHUB_API_URL"] == "http://127.0.0.1:1"
    assert "HOME" not in env
    assert env["DOCKER_CONFIG"].startswith(str(tmp_path))


def test_github_actions_env_points_at_the_fake(github_actions_env, fake_github):
    assert github_actions_env["GITHUB_API_URL"] == fake_github.url
    assert github_actions_env["GITHUB_SHA"] == HEAD_SHA
    assert Path(github_actions_env["GITHUB_EVENT_PATH"]).is_file()
    assert Path(github_actions_env["GITHUB_OUTPUT"]).is_file()


@pytest.mark.exclusive("harness-self-test")
def test_the_exclusive_marker_holds_its_lock_for_the_whole_test(run_dir):
    with open(run_dir / "exclusive-harness-self-test.lock") as another:
        with pytest.raises(BlockingIOError):
            fcntl.flock(another, fcntl.LOCK_EX | fcntl.LOCK_NB)
