"""`release-capsule serve`, the verifier behind Kargo's `http` step (spec
section 10), started as a process against the real registry (with and
without htpasswd), the fault proxy and hand-written fakes for what a real
registry cannot be made to do. Requests are made exactly as code-dot-org's
Kustomize stage makes them (kargo_http.py reads the stage file), and the
stage's own successExpression, failureExpression and outputs judge the
answers."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from harness import BackgroundServer, QuietHandler, free_port
from harness.evil_registry import build_layer, capsule_annotations, capsule_manifest, package_tree_digest, sha256_digest
from kargo_http import HttpStep, response_body
from serve_support import DEPLOY, KUSTOMIZATION, STEP, allow, behind, judged, stage_body
from verify_support import CREATED, SHA, TAG, World, app_image_layout, skopeo_push


@pytest.fixture
def kustomize_world(registry, repo_name, skopeo, run_cli, tmp_path) -> World:
    base = tmp_path / "kustomize"
    (base / "base").mkdir(parents=True)
    (base / "kustomization.yaml").write_bytes(KUSTOMIZATION)
    (base / "base/kustomization.yaml").write_bytes(b"resources:\n  - deployment.yaml\n")
    (base / "base/deployment.yaml").write_bytes(b"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: codeai\n")
    image = f"{registry.host}/{repo_name}"
    w = World(registry, skopeo, run_cli, base, tmp_path, image, f"{image}-release-capsule", "", kind="kustomize")
    w.image_digest = w.push_image_tag(TAG)
    return w


# -- the stage's request, unchanged ---------------------------------------------

def test_the_kustomize_stage_request_verifies_and_its_expressions_pass(kustomize_world, serve):
    w = kustomize_world
    digest = w.publish()
    s = serve(*allow(w))
    body = stage_body(w)
    assert body.endswith(b"}\n") and b'"capsule":{"repoURL"' in body, body  # Go's compact, sorted JSON
    status, answer = s.verify(body)
    assert status == 200, answer
    success, failure, outputs = judged(status, answer)
    assert (success, failure) == (True, False)
    assert outputs == {"verifiedGitCommit": SHA, "verifiedPackageKind": "kustomize", "verifiedPackagePath": "package/kustomize"}
    assert answer["capsule"] == {"repoURL": w.capsule, "tag": TAG, "digest": digest}, "download by this digest"
    assert answer["image"]["digest"] == w.image_digest and answer["reason"] == "" and answer["failures"] == []
    log = s.logs(path="/verify", at_least=1)[-1]
    assert (log["status"], log["outcome"], log["cache"], log["capsule"]) == (200, "verified", "miss", f"{w.capsule}@{digest}")


def test_the_small_form_by_digest_and_a_helm_capsule(world, serve):
    digest = world.publish()
    s = serve(*allow(world))
    small = json.dumps({"image": {"repoURL": world.image, "tag": TAG},
                        "capsule": {"repoURL": world.capsule, "digest": digest}}).encode()
    status, answer = s.verify(small)
    assert status == 200 and answer["ok"] is True, answer
    assert answer["release"] == {"gitCommit": SHA, "packageKind": "helm", "packagePath": "package/helm"}
    # Tag and digest together must agree.
    both = json.dumps({"image": {"repoURL": world.image, "tag": TAG},
                       "capsule": {"repoURL": world.capsule, "tag": TAG, "digest": sha256_digest(b"other")}}).encode()
    status, answer = s.verify(both)
    assert status == 422 and [f["field"] for f in answer["failures"]] == ["capsule.digest"], answer


# -- the stages this repository documents (deploy/kargo/), run as written ------------

def documented(stage: str, world: World, capsule_digest: str | None = None) -> tuple[HttpStep, bytes]:
    step = HttpStep.load(DEPLOY / stage)
    step = HttpStep(step.config, {**step.vars, "imageRepo": world.image, "capsuleRepo": world.capsule}, step.retry)
    images = {world.image: {"RepoURL": world.image, "Tag": TAG, "Digest": world.image_digest},
              world.capsule: {"RepoURL": world.capsule, "Tag": TAG, "Digest": capsule_digest or ""}}
    return step, step.body(images, {})


@pytest.mark.parametrize("stage", ["stage-staging-kustomize.yaml", "stage-production-helm.yaml"])
def test_the_documented_stages_verify_first_and_retry_an_outage(stage, world, kustomize_world, serve):
    w = kustomize_world if "kustomize" in stage else world
    digest = w.publish()
    step, body = documented(stage, w, digest)
    s = serve(*allow(w))
    status, answer = s.verify(body)
    assert status == 200, answer
    success, failure, outputs = step.judge(status, answer)
    assert (success, failure) == (True, False)
    assert outputs["capsuleDigest"] == digest, "the download that follows uses the verified digest"
    assert {v for k, v in outputs.items() if k.lower().endswith("packagekind")} == {w.kind}
    assert step.outcome(status, answer) == "succeeded"
    # A registry outage or the service's own fault (502, 503), or anything in front of
    # it that says "later" (504, 429, 408): Kargo keeps the step Running and runs it
    # again until retry.timeout.
    for later in (502, 503, 504, 429, 408):
        assert step.outcome(later, VerifyFailure.body(later)) == "running", later
    html = response_body("text/html", b"<html><title>502 Bad Gateway</title></html>")
    assert html == {} and step.outcome(502, html) == "running", "an HTML page from a proxy too"
    assert step.outcome(503, response_body("", b"")) == "running", "the service's own backstop timeout (an empty 503)"
    assert step.timeout == "10m"
    # A failed verification, a refused request, a wrong URL: the promotion fails at once.
    for final in (400, 401, 403, 404, 413, 422, 500):
        assert step.outcome(final, VerifyFailure.body(final)) == "failed", final
    # No errorExpression: Kargo before v1.11 refuses the field (see the stage's comment).
    assert "errorExpression" not in step.config
    assert step.error_message(422, VerifyFailure.body(422)) == "HTTP (422) response met failure criteria"
    # No answer at all (the pod went away mid-rollout): errors, a few of which are ridden out.
    assert step.error_threshold == 5


def test_the_consumer_stage_fails_the_promotion_on_an_outage():
    """code-dot-org's stage as it is today (../shared/consumers): its
    failureExpression `response.status >= 400 || response.body.ok == false`
    is true for a 502 or 503, so Kargo fails the promotion at once, without a
    retry. deploy/kargo's stages are the fix."""
    assert STEP.outcome(503, VerifyFailure.body(503)) == "failed"
    assert STEP.outcome(502, response_body("text/html", b"<html>")) == "failed"
    assert STEP.outcome(200, {"ok": True}) == "succeeded"
    assert STEP.error_threshold == 1 and STEP.timeout is None


class VerifyFailure:
    @staticmethod
    def body(status: int) -> dict:
        return {"ok": False, "reason": f"status {status}", "release": {"gitCommit": "", "packageKind": "", "packagePath": ""},
                "capsule": {"repoURL": "", "tag": "", "digest": ""}, "image": {"repoURL": "", "tag": "", "digest": ""}, "failures": []}


# -- every section 8 failure, named ----------------------------------------------

@pytest.mark.parametrize("case", [
    "freight-digest", "registry-digest", "capsule-for-another-commit", "tampered-package", "artifact-type",
    "missing-sbom", "no-capsule-tag", "unsafe-archive", "image-tag-missing",
])
def test_each_section_8_failure_is_422_naming_the_field(world, serve, case):
    other = "sha256:" + "0" * 64
    image_digest = None
    if case == "freight-digest":
        world.publish()
        image_digest, expected = other, "image.digest (--image-digest)"
    elif case == "registry-digest":
        world.publish(image_digest=other)
        expected = "image.digest (registry)"
    elif case == "capsule-for-another-commit":
        world.publish(sha="0000111122223333444455556666777788889999", tag=TAG)
        expected = "gitCommit"
    elif case == "tampered-package":
        files = world.crafted_files()
        files["package/helm/values.yaml"] = b"replicaCount: 99\n"
        world.publish_crafted(files, package_digest=package_tree_digest(world.crafted_files()))
        expected = "package.digest"
    elif case == "artifact-type":
        world.publish_crafted(world.crafted_files(), artifact_type="application/vnd.cncf.helm.config.v1+json")
        expected = "artifactType"
    elif case == "missing-sbom":
        files = world.crafted_files()
        del files["metadata/sbom.json"]
        world.publish_crafted(files)
        expected = "metadata/sbom.json"
    elif case == "no-capsule-tag":
        expected = "capsule"
    elif case == "unsafe-archive":
        files = world.crafted_files()
        files["package/helm/../../escape"] = b"x"
        world.publish_crafted(files)
        expected = "layer archive"
    else:  # the image tag is gone from the registry
        world.publish()
        subprocess.run(["skopeo", "delete", "--tls-verify=false", f"docker://{world.image}:{TAG}"], check=True,
                       capture_output=True, env={"PATH": os.environ["PATH"], "HOME": str(world.tmp)})
        expected = "image.digest (registry)"
    s = serve(*allow(world))
    status, answer = s.verify(stage_body(world, image_digest=image_digest))
    assert status == 422 and answer["ok"] is False, answer
    fields = [f["field"] for f in answer["failures"]]
    assert expected in fields, answer
    assert answer["reason"].startswith("verification failed"), answer
    assert answer["release"] == {"gitCommit": "", "packageKind": "", "packagePath": ""}
    success, failure, _ = judged(status, answer)
    assert (success, failure) == (False, True)


def test_a_release_block_that_disagrees_with_the_capsule(kustomize_world, serve):
    w = kustomize_world
    w.publish()
    s = serve(*allow(w))
    status, answer = s.verify(stage_body(w, release={"packagePath": "package/helm", "gitCommit": "f" * 40}))
    assert status == 422, answer
    failures = {f["field"]: f for f in answer["failures"]}
    assert set(failures) == {"release.gitCommit", "release.packagePath"}, answer
    assert failures["release.packagePath"] == {"field": "release.packagePath", "expected": "package/kustomize", "actual": "package/helm"}


# -- tags are resolved on every request, content is cached --------------------------

def test_a_tag_moved_after_caching_is_seen(world, serve, fault_proxy):
    proxy = fault_proxy(world.registry)
    view = behind(proxy, world)
    first = view.publish()
    s = serve("--allow", f"{proxy.host}/test/*")
    assert s.verify(stage_body(view))[0] == 200
    proxy.reset()
    status, answer = s.verify(stage_body(view))
    assert status == 200
    blob_gets = [e for e in proxy.log if e.method == "GET" and "/blobs/" in e.path]
    assert blob_gets == [], "the second request downloads nothing"
    tag_heads = [e.path for e in proxy.log if e.method == "HEAD" and e.path.endswith(f"/manifests/{TAG}")]
    assert len(tag_heads) == 2, "both tags are resolved again"
    # The image tag moves to a rebuilt image: the cached capsule no longer matches it.
    rebuilt = app_image_layout(world.tmp / "rebuilt", TAG, body=b"the app, rebuilt\n")
    skopeo_push(world.skopeo, world.tmp / "rebuilt", TAG, f"{view.image}:{TAG}")
    status, answer = s.verify(stage_body(view))
    assert status == 422 and [f["field"] for f in answer["failures"]] == ["image.digest (registry)"], answer
    assert answer["image"]["digest"] == rebuilt
    # The capsule tag moves to the capsule of the rebuilt image: a new digest, verified.
    view.image_digest = rebuilt
    second = view.publish()
    status, answer = s.verify(stage_body(view))
    assert status == 200 and answer["capsule"]["digest"] == second != first, answer


def test_concurrent_requests_for_an_uncached_capsule_download_it_once(world, serve, fault_proxy):
    proxy = fault_proxy(world.registry, delay=0.3, delay_when=lambda m, p: m == "GET" and "/blobs/" in p)
    view = behind(proxy, world)
    view.publish()
    s = serve("--allow", f"{proxy.host}/test/*", "--max-concurrent", "16")
    results: list[tuple[int, dict]] = []
    threads = [threading.Thread(target=lambda: results.append(s.verify(stage_body(view)))) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r[0] for r in results] == [200] * 10, results
    layer_gets = [e.path for e in proxy.log if e.method == "GET" and "/blobs/" in e.path]
    assert len(layer_gets) == 2 and len(set(layer_gets)) == 2, layer_gets  # layer 0 and the chart layer, once each
    caches = sorted(l["cache"] for l in s.logs(path="/verify", at_least=10))
    assert caches.count("miss") == 1 and caches.count("hit") == 9, caches


# -- what is refused ---------------------------------------------------------------

def test_a_repository_off_the_allow_list_is_403_and_nothing_is_fetched(world, serve, fault_proxy):
    proxy = fault_proxy(world.registry)
    world.publish()
    s = serve("--allow", f"{proxy.host}/somebody-else/*")
    view = World(world.registry, world.skopeo, world.run_cli, world.chart, world.tmp,
                 world.image.replace(world.registry.host, proxy.host), world.capsule.replace(world.registry.host, proxy.host),
                 world.image_digest)
    status, answer = s.verify(stage_body(view))
    assert status == 403 and answer["ok"] is False, answer
    assert answer["failures"][0]["field"] == "image.repoURL"
    assert proxy.log == [], "no request left the service"
    assert judged(status, answer)[:2] == (False, True)


@pytest.mark.parametrize("body,field", [
    (b"not json", "body"),
    (b'{"image": {"repoURL": "ghcr.io/a/b", "tag": "latest"}, "capsule": {"repoURL": "ghcr.io/a/c", "tag": "x"}}', "image.tag"),
    (b'{"image": {"repoURL": "ghcr.io/a/b", "tag": "git-0123456789abcdef0123456789abcdef01234567"}}', "capsule"),
    (b"{" + b'"pad": "' + b"x" * 70_000 + b'"}', None),
])
def test_malformed_and_oversized_bodies_are_400(world, serve, body, field):
    s = serve(*allow(world))
    status, answer = s.verify(body)
    assert status == 400 and answer["ok"] is False, answer
    if field:
        assert answer["failures"][0]["field"] == field and field in answer["reason"], answer
    else:
        assert "larger than this service accepts" in answer["reason"], answer


def test_a_registry_outage_is_503_and_recovers(world, serve, fault_proxy):
    proxy = fault_proxy(world.registry)
    view = behind(proxy, world)
    view.publish()
    s = serve("--allow", f"{proxy.host}/test/*")
    proxy.always_fail = True
    status, answer = s.verify(stage_body(view))
    assert status == 503 and "retry later" in answer["reason"], answer
    success, failure, _ = judged(status, answer)
    assert success is False
    proxy.always_fail = False
    status, answer = s.verify(stage_body(view))
    assert status == 200, answer
    # A registry nobody answers for: 503 too.
    dead = f"127.0.0.1:{free_port()}"
    s2 = serve("--allow", f"{dead}/a/*")
    dead_view = World(world.registry, world.skopeo, world.run_cli, world.chart, world.tmp, f"{dead}/a/app",
                      f"{dead}/a/app-release-capsule", world.image_digest)
    assert s2.verify(stage_body(dead_view))[0] == 503


# -- credentials --------------------------------------------------------------------

def docker_config(tmp: Path, host: str, user: str, password: str) -> Path:
    path = tmp / "dockerconfig" / ".dockerconfigjson"
    path.parent.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return path


def test_logins_come_from_a_docker_config_and_never_reach_the_logs(auth_registry, repo_name, skopeo, run_cli, repo_root,
                                                                 tmp_path, serve):
    image = f"{auth_registry.host}/{repo_name}"
    creds = f"{auth_registry.username}:{auth_registry.password}"
    w = World(auth_registry, skopeo, run_cli, repo_root / "examples/charts/hello", tmp_path, image, f"{image}-release-capsule", "", creds)
    w.image_digest = w.push_image_tag(TAG)
    w.publish()
    config = docker_config(tmp_path, auth_registry.host, auth_registry.username, auth_registry.password)
    s = serve(*allow(w), "--registry-config", str(config))
    status, answer = s.verify(stage_body(w))
    assert status == 200, answer
    anonymous = serve(*allow(w))
    status, answer = anonymous.verify(stage_body(w))
    assert status == 502 and "no credentials" in answer["reason"], answer
    for server in (s, anonymous):
        server.stop()
        text = "\n".join(server.lines) + server.stderr
        assert auth_registry.password not in text
        assert base64.b64encode(creds.encode()).decode() not in text


class _Capture(BackgroundServer):
    """Another host: records what arrives (a token service, or blob storage)."""

    class handler_class(QuietHandler):
        def do_GET(self):
            owner = self.server.owner
            owner.seen.append((self.path, self.headers.get("Authorization")))
            if self.path.startswith("/token"):
                return self.send_bytes(200, b'{"token": "anonymous-token"}')
            data = owner.blobs.get(self.path.rsplit("/", 1)[-1])
            self.send_bytes(200 if data else 404, data or b"{}", "application/octet-stream")

    def __init__(self):
        self.seen: list[tuple[str, str | None]] = []
        self.blobs: dict[str, bytes] = {}
        super().__init__()


class _Leaky(BackgroundServer):
    """A registry that sends clients elsewhere: its token realm, or its blob
    downloads (307), on another host. It accepts Basic ``user:secret``."""

    class handler_class(QuietHandler):
        def _any(self, head=False):
            owner = self.server.owner
            auth = self.headers.get("Authorization")
            owner.seen.append((self.command, self.path, auth))
            if owner.mode == "realm" and not (auth or "").startswith("Bearer "):
                return self.send_bytes(401, b"{}", headers={"WWW-Authenticate": f'Bearer realm="{owner.capture.url}/token",service="leaky"'}, head=head)
            if owner.mode == "redirect" and auth != "Basic " + base64.b64encode(b"user:secret").decode():
                return self.send_bytes(401, b"{}", headers={"WWW-Authenticate": 'Basic realm="leaky"'}, head=head)
            if "/manifests/" in self.path:
                m = owner.manifest
                if m is None:
                    return self.send_bytes(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', head=head)
                return self.send_bytes(200, m, "application/vnd.oci.image.manifest.v1+json",
                                       headers={"Docker-Content-Digest": sha256_digest(m)}, head=head)
            if "/blobs/" in self.path:
                digest = self.path.rsplit("/", 1)[-1]
                if head:
                    return self.send_bytes(200, b"", head=True)
                return self.send_bytes(307, b"", headers={"Location": f"{owner.capture.url}/storage/{digest}"})
            self.send_bytes(404, b"{}", head=head)

        def do_GET(self):
            self._any()

        def do_HEAD(self):
            self._any(head=True)

    def __init__(self, mode: str, capture: _Capture):
        self.mode, self.capture = mode, capture
        self.seen: list = []
        self.manifest: bytes | None = None
        super().__init__()


def test_logins_never_go_to_another_host(tmp_path, serve):
    secret = "user:secret"
    with _Capture() as capture, _Leaky("realm", capture) as realm, _Leaky("redirect", capture) as redirect:
        # 1. A token realm on another host gets no login: the token is asked for anonymously.
        image = f"{realm.host}/acme/app"
        config = tmp_path / "config.json"
        auth = base64.b64encode(secret.encode()).decode()
        config.write_text(json.dumps({"auths": {realm.host: {"auth": auth}, redirect.host: {"auth": auth}}}))
        s = serve("--allow", f"{realm.host}/acme/*", "--allow", f"{redirect.host}/acme/*", "--registry-config", str(config))
        body = json.dumps({"image": {"repoURL": image, "tag": TAG}, "capsule": {"repoURL": f"{image}-release-capsule", "tag": TAG}}).encode()
        status, answer = s.verify(body)
        assert status == 422, answer  # the fake has no such tag
        assert capture.seen and all(a is None for _, a in capture.seen), capture.seen
        assert all(a is None or a == "Bearer anonymous-token" for _, _, a in realm.seen), realm.seen
        # 2. A blob download redirected to another host carries no Authorization there.
        capture.seen.clear()
        files = {"release.yaml": b"x"}
        layer = build_layer(files)
        capture.blobs[sha256_digest(layer)] = layer
        annotations = capsule_annotations(sha=SHA, image_repo=f"{redirect.host}/acme/app", image_digest="sha256:" + "1" * 64,
                                          created=CREATED, package_digest=package_tree_digest(files))
        redirect.manifest = capsule_manifest(layer, annotations=annotations)
        image = f"{redirect.host}/acme/app"
        body = json.dumps({"image": {"repoURL": image, "tag": TAG}, "capsule": {"repoURL": f"{image}-release-capsule", "tag": TAG}}).encode()
        status, answer = s.verify(body)
        assert status == 422, answer  # a crafted, incomplete capsule
        downloads = [(p, a) for p, a in capture.seen if p.startswith("/storage/")]
        assert downloads and all(a is None for _, a in downloads), capture.seen
        assert any(a and a.startswith("Basic ") for _, _, a in redirect.seen), "the registry itself got the login"


# -- lifecycle and the other endpoints ------------------------------------------------

def test_health_readiness_and_metrics(world, serve):
    world.publish()
    s = serve(*allow(world))
    assert s.get("/healthz")[0] == 200 and s.get("/readyz")[0] == 200
    for _ in range(2):
        assert s.verify(stage_body(world))[0] == 200
    s.verify(b"nope")
    status, text, headers = s.get("/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    metrics = text.decode()
    for line in ('release_capsule_http_requests_total{path="/verify",status="200"} 2',
                 'release_capsule_http_requests_total{path="/verify",status="400"} 1',
                 "release_capsule_cache_hits_total 1", "release_capsule_cache_misses_total 1",
                 "release_capsule_cache_entries 1", "release_capsule_verification_duration_seconds_count 3"):
        assert line in metrics.splitlines(), f"{line}\n{metrics}"


def test_sigterm_finishes_requests_in_flight_then_exits(world, serve, fault_proxy):
    proxy = fault_proxy(world.registry, delay=1.5, delay_when=lambda m, p: m == "GET" and "/blobs/" in p)
    view = behind(proxy, world)
    view.publish()
    s = serve("--allow", f"{proxy.host}/test/*")
    result: list = []
    t = threading.Thread(target=lambda: result.append(s.verify(stage_body(view))))
    t.start()
    deadline = time.monotonic() + 30
    while not any(e.method == "GET" and "/blobs/" in e.path for e in proxy.log):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    s.proc.send_signal(signal.SIGTERM)
    t.join(timeout=60)
    assert result and result[0][0] == 200, result
    assert s.proc.wait(timeout=30) == 0
    events = [l.get("event") for l in s.logs()]
    assert "draining" in events and events[-1] == "stopped", events
    with pytest.raises(OSError):
        s.request("GET", "/healthz", timeout=2)


def test_bad_configuration_stops_at_start(bin_path, cli_env, tmp_path):
    cases = [
        ([], "--allow is required"),
        (["--allow", "ghcr.io/*/x"], "only a trailing /* is a wildcard"),
        (["--allow", "ghcr.io/a/*", "--registry-config", str(tmp_path / "missing.json")], "cannot be read"),
        (["--allow", "ghcr.io/a/*", "--listen", "localhost"], "--listen"),
    ]
    for args, expected in cases:
        proc = subprocess.run([str(bin_path), "serve", *args], env=cli_env, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2 and expected in proc.stderr, (args, proc.stderr)
