"""GHCR's way of authenticating, in front of the real registry.

GHCR (like Docker Hub) answers 401 with ``WWW-Authenticate: Bearer realm=...``;
the client fetches a token for a scope (``repository:<name>:pull`` or
``pull,push``) from the realm, with Basic credentials or none for an anonymous
pull, and sends it as ``Authorization: Bearer``. No token server is available
locally, so ``BearerGate`` plays that part: a proxy (the harness's, so the
registry behind it is real) that only forwards requests carrying a token with
the right scope, and a token endpoint that grants push only to the right user.
"""

from __future__ import annotations

import base64
import secrets
import urllib.parse

import pytest

from harness.fault_proxy import FaultProxy, _ProxyHandler

import image_layouts as il
from publish_support import TAG, capsule_repo, publish_argv, result_json

USER, PASSWORD = "octocat", "ghs_" + secrets.token_hex(8)


def _repo_of(path: str) -> str | None:
    """``/v2/<name>/(manifests|blobs|tags)/...`` → name."""
    rest = path[len("/v2/"):]
    for marker in ("/manifests/", "/blobs/", "/tags/"):
        if marker in rest:
            return rest.split(marker, 1)[0]
    return None


class _GateHandler(_ProxyHandler):
    def _gate(self) -> None:
        gate: BearerGate = self.server.owner
        path, _, query = self.path.partition("?")
        if path == "/token":
            return self._token(gate, query)
        repo = _repo_of(path)
        need = "pull" if self.command in ("GET", "HEAD") else "push"
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        granted = gate.tokens.get(token, set())
        if repo is None or (repo, need) not in granted:
            for _ in self.iter_body():
                pass
            gate.refused.append((self.command, path))
            challenge = f'Bearer realm="{gate.url}/token",service="rc-gate",scope="repository:{repo}:{need}"'
            self.send_bytes(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                            headers={"WWW-Authenticate": challenge}, head=self.command == "HEAD")
            return
        self._handle()

    def _token(self, gate: "BearerGate", query: str) -> None:
        q = urllib.parse.parse_qs(query)
        scope = q.get("scope", [""])[0]
        user = None
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if (user, password) != (USER, PASSWORD):
                self.send_bytes(401, b'{"errors":[{"code":"DENIED","message":"bad credentials"}]}')
                return
        gate.token_requests.append((user, scope, q.get("service", [""])[0]))
        _, repo, actions = scope.split(":")
        # Anonymous users may pull; push needs the right user.
        allowed = {a for a in actions.split(",") if a == "pull" or user == USER}
        token = secrets.token_hex(8)
        gate.tokens[token] = {(repo, a) for a in allowed}
        self.send_bytes(200, f'{{"token":"{token}","expires_in":300}}'.encode())

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _gate


class BearerGate(FaultProxy):
    handler_class = _GateHandler

    def __init__(self, upstream: str) -> None:
        self.tokens: dict[str, set[tuple[str, str]]] = {}
        self.token_requests: list[tuple[str | None, str, str]] = []
        self.refused: list[tuple[str, str]] = []
        super().__init__(upstream)


@pytest.fixture
def gate(registry):
    with BearerGate(registry.host) as g:
        yield g


def test_bearer_tokens_are_fetched_per_repository_with_push_scope(gate, registry, repo_name, run_cli, tmp_path):
    layout = il.single_arch(tmp_path / "image")
    image = f"{gate.host}/{repo_name}"
    env = {"REGISTRY_USERNAME": USER, "REGISTRY_PASSWORD": PASSWORD}

    proc = run_cli(publish_argv(image, "--image-layout", layout.path), env=env)
    out = result_json(proc)

    assert out["published"] is True and out["imagePushed"] is True
    client = registry.client()
    assert client.manifest_digest(repo_name, TAG) == layout.digest
    assert client.manifest_digest(capsule_repo(repo_name), TAG) == out["digest"]
    # One token per repository, asked with the user's credentials for pull,push
    # and the service the challenge named. Only the run's first requests (the
    # image and the capsule tag, resolved together) are refused: after them the
    # client knows the realm and asks for tokens up front.
    assert sorted(gate.token_requests) == sorted([
        (USER, f"repository:{repo_name}:pull,push", "rc-gate"),
        (USER, f"repository:{capsule_repo(repo_name)}:pull,push", "rc-gate"),
    ])
    assert len(gate.refused) == 2 and {p.split('/manifests/')[1] for _, p in gate.refused} == {TAG}, gate.refused
    assert PASSWORD not in proc.stdout + proc.stderr
    assert not any(t in proc.stdout + proc.stderr for t in gate.tokens), "tokens never reach the output"


def test_anonymous_pull_works_and_anonymous_push_is_refused_with_a_hint(gate, registry, repo_name, run_cli, tmp_path):
    layout = il.single_arch(tmp_path / "image")
    image = f"{gate.host}/{repo_name}"
    creds = {"REGISTRY_USERNAME": USER, "REGISTRY_PASSWORD": PASSWORD}
    result_json(run_cli(publish_argv(image, "--image-layout", layout.path), env=creds))
    gate.token_requests.clear()

    # Reading needs no credentials: a dry run resolves image and capsule anonymously.
    dry = result_json(run_cli(publish_argv(image, "--dry-run")))
    assert dry["imageDigest"] == layout.digest and dry["published"] is False
    assert {u for u, _, _ in gate.token_requests} == {None}
    assert all(scope.endswith(":pull") for _, scope, _ in gate.token_requests)

    # Writing does: a new capsule repository, no credentials.
    proc = run_cli(publish_argv(image, "--capsule-repository", f"{gate.host}/{repo_name}-other"))
    assert proc.returncode == 2, proc.stderr
    assert "access denied (401)" in proc.stderr and "no credentials were given" in proc.stderr
    assert registry.client().tags(f"{repo_name}-other") == []


def test_wrong_credentials_at_the_token_service(gate, repo_name, run_cli, tmp_path):
    layout = il.single_arch(tmp_path / "image")
    proc = run_cli(publish_argv(f"{gate.host}/{repo_name}", "--image-layout", layout.path),
                   env={"REGISTRY_USERNAME": USER, "REGISTRY_PASSWORD": "not-the-token-4711"})
    assert proc.returncode == 2, proc.stderr
    assert "the token service refused the credentials" in proc.stderr
    assert "not-the-token-4711" not in proc.stderr
