"""Signatures (spec section 9) in cosign's format, checked by things not
written here: openssl verifies every signature over the exact payload bytes,
and each field cosign's verifier (and so Flux's `spec.verify.provider:
cosign`) reads is checked against sigstore/cosign specs/SIGNATURE_SPEC.md.
The keys are public test vectors from cosign and sigstore-rs
(tests/data/cosign/SOURCES.md)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from harness.registry import sha256_digest
from publish_support import TAG, capsule_repo, publish_argv, result_json
from verify_support import SHA, SOURCE, TAG as VERIFY_TAG

KEYS = Path(__file__).resolve().parents[1] / "data" / "cosign"
ENCRYPTED = KEYS / "cosign-keys-test-sigstore.key"  # password "hello"
PLAIN = KEYS / "sigstore-rs-ecdsa-unencrypted.key"
OTHER = KEYS / "sigstore-rs-ecdsa-encrypted.key"  # password "123"
SIG_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIG_ANNOTATION = "dev.cosignproject.cosign/signature"


def public_key(run_cli, tmp_path: Path, key: Path, password: str | None, name: str) -> Path:
    proc = run_cli("public-key", "--signing-key", key, env={"COSIGN_PASSWORD": password})
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / name
    path.write_text(proc.stdout)
    return path


def signature_tag(digest: str) -> str:
    return "sha256-" + digest.removeprefix("sha256:") + ".sig"


def read_signatures(registry, repo: str, digest: str) -> tuple[dict, list[bytes]]:
    """The signature manifest and its payload blobs, as a verifier fetches them."""
    client = registry.client()
    manifest = json.loads(client.get_manifest(repo, signature_tag(digest)).body)
    payloads = [client.get_blob(repo, layer["digest"]).body for layer in manifest["layers"]]
    return manifest, payloads


def openssl_verifies(tmp_path: Path, pub: Path, payload: bytes, signature_b64: str) -> bool:
    (tmp_path / "payload").write_bytes(payload)
    (tmp_path / "sig.der").write_bytes(base64.b64decode(signature_b64))
    proc = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(pub), "-signature", str(tmp_path / "sig.der"),
                           str(tmp_path / "payload")], capture_output=True, text=True)
    return proc.returncode == 0 and "Verified OK" in proc.stdout


def assert_cosign_format(manifest: dict, payloads: list[bytes], repo_ref: str, digest: str, config: bytes) -> None:
    """Every field cosign's tag-based verification reads (SIGNATURE_SPEC.md)."""
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert manifest["config"]["digest"] == sha256_digest(config)
    assert json.loads(config)["rootfs"]["diff_ids"] == [l["digest"] for l in manifest["layers"]]
    for layer, payload in zip(manifest["layers"], payloads):
        assert layer["mediaType"] == SIG_MEDIA_TYPE
        assert layer["digest"] == sha256_digest(payload) and layer["size"] == len(payload)
        base64.b64decode(layer["annotations"][SIG_ANNOTATION], validate=True)
    ours = json.loads(payloads[-1])
    assert ours == {
        "critical": {"identity": {"docker-reference": repo_ref}, "image": {"docker-manifest-digest": digest},
                     "type": "cosign container image signature"},
        "optional": None,
    }


def test_publish_signs_as_cosign_does_and_openssl_verifies(registry, repo_name, run_cli, tmp_path):
    import image_layouts as il
    image = f"{registry.host}/{repo_name}"
    layout = il.single_arch(tmp_path / "image")
    pub = public_key(run_cli, tmp_path, ENCRYPTED, "hello", "cosign.pub")
    out = result_json(run_cli(publish_argv(image, "--image-layout", layout.path, "--signing-key", ENCRYPTED),
                              env={"COSIGN_PASSWORD": "hello"}))
    digest = out["digest"]
    assert out["signature"] == {"tag": signature_tag(digest), "pushed": True}
    repo = capsule_repo(repo_name)
    manifest, payloads = read_signatures(registry, repo, digest)
    config = registry.client().get_blob(repo, manifest["config"]["digest"]).body
    assert_cosign_format(manifest, payloads, f"{registry.host}/{repo}", digest, config)
    signature = manifest["layers"][0]["annotations"][SIG_ANNOTATION]
    assert openssl_verifies(tmp_path, pub, payloads[0], signature), "openssl rejects the signature"
    assert not openssl_verifies(tmp_path, pub, payloads[0].replace(b"sha256:", b"sha256:0", 1), signature)
    # verify --public-key: the right key passes, another key and an unsigned capsule fail (exit 1, naming the key).
    ref = f"{image}-release-capsule:{TAG}"
    ok = run_cli("verify", "--capsule", ref, "--image", f"{image}:{TAG}", "--public-key", pub)
    assert ok.returncode == 0, ok.stderr
    other = public_key(run_cli, tmp_path, OTHER, "123", "other.pub")
    wrong = run_cli("verify", "--capsule", ref, "--image", f"{image}:{TAG}", "--public-key", other)
    assert wrong.returncode == 1, wrong.stderr
    assert "signature: expected a valid signature by" in wrong.stderr and str(other) in wrong.stderr, wrong.stderr
    assert "none valid by this key" in wrong.stderr


def test_signing_again_pushes_nothing_and_other_signers_stay(registry, repo_name, run_cli, tmp_path):
    import image_layouts as il
    image = f"{registry.host}/{repo_name}"
    layout = il.single_arch(tmp_path / "image")
    first = result_json(run_cli(publish_argv(image, "--image-layout", layout.path, "--signing-key", PLAIN)))
    repo = capsule_repo(repo_name)
    before = registry.client().manifest_digest(repo, signature_tag(first["digest"]))
    again = result_json(run_cli(publish_argv(image, "--signing-key", PLAIN)))
    assert again["signature"] == {"tag": signature_tag(first["digest"]), "pushed": False}
    assert registry.client().manifest_digest(repo, signature_tag(first["digest"])) == before
    # A second signer (another key) appends; the first signature is kept, first.
    third = result_json(run_cli(publish_argv(image, "--signing-key", OTHER), env={"COSIGN_PASSWORD": "123"}))
    assert third["signature"]["pushed"] is True
    manifest, payloads = read_signatures(registry, repo, first["digest"])
    assert len(manifest["layers"]) == 2
    pubs = [public_key(run_cli, tmp_path, k, p, f"{n}.pub") for k, p, n in ((PLAIN, None, "plain"), (OTHER, "123", "other"))]
    for layer, payload, pub in zip(manifest["layers"], payloads, pubs):
        assert openssl_verifies(tmp_path, pub, payload, layer["annotations"][SIG_ANNOTATION])


@pytest.mark.parametrize("key,password,expected", [
    (ENCRYPTED, "wrong", "the password does not open this key"),
    (ENCRYPTED, None, "COSIGN_PASSWORD is not set"),
    (KEYS / "cosign-keys-test-rsa-pkcs8.key", None, "an RSA key is not supported"),
    (KEYS / "SOURCES.md", None, "is not a PEM key file"),
])
def test_bad_keys_are_input_errors_before_anything_is_pushed(registry, repo_name, run_cli, tmp_path, key, password, expected):
    import image_layouts as il
    image = f"{registry.host}/{repo_name}"
    layout = il.single_arch(tmp_path / "image")
    proc = run_cli(publish_argv(image, "--image-layout", layout.path, "--signing-key", key), env={"COSIGN_PASSWORD": password})
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr, proc.stderr
    assert "PRIVATE KEY" not in proc.stderr + proc.stdout and "eyJrZGYi" not in proc.stderr
    assert registry.client().tags(repo_name) == [] and registry.client().tags(capsule_repo(repo_name)) == []


def test_the_verifier_service_requires_the_signature(world, serve_for_signing, run_cli, tmp_path):
    pub = public_key(run_cli, tmp_path, PLAIN, None, "cosign.pub")
    digest = world.publish()
    s = serve_for_signing(world, pub)
    body = json.dumps({"image": {"repoURL": world.image, "tag": VERIFY_TAG, "digest": world.image_digest},
                       "capsule": {"repoURL": world.capsule, "tag": VERIFY_TAG}}).encode()
    status, answer = s.verify(body)
    assert status == 422 and [f["field"] for f in answer["failures"]] == ["signature"], answer
    # Signed afterwards (as cosign sign would): the next request sees it.
    proc = run_cli("publish", "--sha", SHA, "--image", world.image,
                   "--capsule-repository", world.capsule, "--source-repository", SOURCE,
                   "--package-path", world.chart, "--created", "2026-11-20T10:11:12Z", "--signing-key", PLAIN, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["digest"] == digest
    status, answer = s.verify(body)
    assert status == 200, answer


@pytest.fixture
def serve_for_signing(serve):
    def start(world, pub: Path):
        return serve("--allow", world.image, "--allow", world.capsule, "--public-key", str(pub))
    return start

