"""What `serve` guarantees a hostile or unlucky caller cannot change (spec
section 10): no request can make a later one fail (the cache keeps only
content fetched from the repository asked), no string of a request reaches a
registry URL unchecked, a fault of the service itself is a 503 that says so,
and registry logins go only to the registry they name."""

from __future__ import annotations

import base64
import json
import resource
import signal

import pytest

from harness import BackgroundServer, QuietHandler
from serve_support import allow, behind, small_body, stage_body
from verify_support import SHA, TAG, World


# -- item 1: one request cannot poison the cache for the next ----------------------------

def test_a_digest_asked_of_a_repository_that_lacks_it_poisons_nothing(world, registry, repo_name, serve):
    digest = world.publish()
    elsewhere = f"{registry.host}/{repo_name}-elsewhere"  # allowed, and does not hold the capsule
    s = serve(*allow(world), "--allow", elsewhere)

    status, answer = s.verify(small_body(world.image, {"repoURL": elsewhere, "digest": digest}))
    assert status == 422 and "no such manifest" in answer["reason"], answer

    # The real request is untouched by that answer: by tag, and by digest.
    status, answer = s.verify(stage_body(world))
    assert status == 200 and answer["capsule"]["digest"] == digest, answer
    status, answer = s.verify(small_body(world.image, {"repoURL": world.capsule, "digest": digest}))
    assert status == 200, answer

    # Nor does the verified content answer for a repository it was not fetched from.
    status, answer = s.verify(small_body(world.image, {"repoURL": elsewhere, "digest": digest}))
    assert status == 422 and "no such manifest" in answer["reason"], answer
    verdicts = [(l["capsule"], l["cache"]) for l in s.logs(path="/verify", at_least=4)]
    assert verdicts == [(f"{elsewhere}@{digest}", "miss"), (f"{world.capsule}@{digest}", "miss"),
                        (f"{world.capsule}@{digest}", "hit"), (f"{elsewhere}@{digest}", "miss")], verdicts


# -- item 2: nothing unchecked reaches a registry URL ------------------------------------

EVIL_TAG = f"../../other/app-capsule/manifests/git-{SHA}"


@pytest.mark.parametrize("field,value", [
    ("capsule.tag", EVIL_TAG),
    ("capsule.tag", f"git-{SHA}?ns=elsewhere"),
    ("capsule.tag", f"git-{SHA}#x"),
    ("capsule.tag", "%2e%2e"),
    ("capsule.tag", ".hidden"),
    ("capsule.tag", "t" * 129),
    ("capsule.digest", "sha256:../../../x"),
    ("capsule.digest", "sha256:" + "A" * 64),
    ("capsule.repoURL", "{proxy}/test/../other"),
    ("capsule.repoURL", "{proxy}/test/x?y=1"),
    ("image.repoURL", "{proxy}/test/%2e%2e/x"),
    ("image.digest", "sha256:../x"),
    ("image.tag", f"git-{SHA}/../x"),
])
def test_every_string_that_reaches_a_url_is_checked_first(world, serve, fault_proxy, field, value):
    proxy = fault_proxy(world.registry)
    s = serve("--allow", f"{proxy.host}/test/*")
    body = {"image": {"repoURL": f"{proxy.host}/test/app", "tag": TAG},
            "capsule": {"repoURL": f"{proxy.host}/test/app-release-capsule", "tag": TAG}}
    part, key = field.split(".")
    body[part][key] = value.format(proxy=proxy.host)
    status, answer = s.verify(json.dumps(body).encode())
    assert status == 400 and answer["failures"][0]["field"] == field, answer
    assert answer["reason"].startswith(f"malformed request: {field}:"), answer
    assert proxy.log == [], "nothing reached the registry"


# -- item 7: the service's own faults are 503 and say so ----------------------------------

def test_a_temp_dir_that_cannot_be_written_is_the_services_fault(world, serve, tmp_path):
    world.publish()
    not_a_dir = tmp_path / "tmp-is-a-file"
    not_a_dir.write_text("")
    s = serve(*allow(world), env={"TMPDIR": str(not_a_dir)})
    status, answer = s.verify(stage_body(world))
    assert status == 503, answer
    assert "the service's own fault" in answer["reason"] and "not the registry's" in answer["reason"], answer
    assert str(not_a_dir) in answer["reason"], answer
    log = s.logs(path="/verify", at_least=1)[-1]
    assert log["outcome"] == "local-fault", log


def test_a_full_disk_mid_download_is_503_and_nothing_is_cached(world, serve):
    world.publish()

    def small_files():
        # Writes past 1 KiB fail (EFBIG) instead of killing the process: a disk that fills up.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))

    s = serve(*allow(world), preexec_fn=small_files)
    status, answer = s.verify(stage_body(world))
    assert status == 503 and "the service's own fault" in answer["reason"], answer
    assert "File too large" in answer["reason"], answer
    # The disk has room again: the same request verifies, without a restart.
    resource.prlimit(s.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    status, answer = s.verify(stage_body(world))
    assert status == 200, answer


# -- item 7: a CLI login goes only to the registry it is for ---------------------------------

class _BasicTrap(BackgroundServer):
    """A registry that asks every client for Basic credentials and records what it gets."""

    class handler_class(QuietHandler):
        def _any(self, head=False):
            self.server.owner.seen.append((self.command, self.path, self.headers.get("Authorization")))
            self.send_bytes(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', headers={"WWW-Authenticate": 'Basic realm="trap"'}, head=head)

        def do_GET(self):
            self._any()

        def do_HEAD(self):
            self._any(head=True)

    def __init__(self):
        self.seen: list[tuple[str, str, str | None]] = []
        super().__init__()


def test_a_cli_login_goes_only_to_the_capsules_registry(auth_registry, repo_name, skopeo, run_cli, repo_root, tmp_path):
    image = f"{auth_registry.host}/{repo_name}"
    creds = f"{auth_registry.username}:{auth_registry.password}"
    w = World(auth_registry, skopeo, run_cli, repo_root / "examples/charts/hello", tmp_path, image, f"{image}-release-capsule", "", creds)
    w.image_digest = w.push_image_tag(TAG)
    digest = w.publish()
    login = ["--registry-username", auth_registry.username, "--registry-password", auth_registry.password]
    with _BasicTrap() as trap:
        # The image named on another registry: it asks for a login, and gets none.
        proc = run_cli("verify", "--capsule", f"{w.capsule}@{digest}", "--image", f"{trap.host}/acme/app:{TAG}", *login)
        assert proc.returncode == 2, proc.stderr
        assert trap.seen and all(auth is None for _, _, auth in trap.seen), trap.seen
        assert f"--registry-login-host {trap.host}" in proc.stderr, proc.stderr
        # Named with --registry-login-host, that registry gets it (and the capsule's no longer does).
        trap.seen.clear()
        proc = run_cli("verify", "--capsule", f"{w.capsule}@{digest}", "--image", f"{trap.host}/acme/app:{TAG}", *login,
                       "--registry-login-host", trap.host, "--registry-login-host", auth_registry.host)
        assert proc.returncode == 2, proc.stderr
        expected = "Basic " + base64.b64encode(creds.encode()).decode()
        assert any(auth == expected for _, _, auth in trap.seen), trap.seen
    # The usual case, one registry for both, works as before.
    proc = w.verify(f"{w.capsule}:{TAG}", *login)
    assert proc.returncode == 0, proc.stderr
