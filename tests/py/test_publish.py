"""`release-capsule publish` against a real registry (CNCF distribution 2.8).

Images are real OCI image layouts made by ``image_layouts`` (single manifest
and multi-arch index, as directories or tars), pushed either by publish itself
(``--image-layout``) or by skopeo. What publish pushed is read back with
skopeo, a stdlib HTTP client, Python's tarfile and Helm.
"""

from __future__ import annotations

import io
import json
import subprocess
import shutil
import tarfile
from pathlib import Path, PurePosixPath

import helm_python
import pytest

import image_layouts as il
from publish_support import (
    HELLO_CHART,
    SHA,
    SOURCE,
    TAG,
    capsule_repo,
    publish_argv,
    result_json,
    skopeo,
    skopeo_env,
    skopeo_push_layout,
    writes,
)

CAPSULE_ARTIFACT_TYPE = "application/vnd.release-capsule.v1"
CAPSULE_LAYER_TYPE = "application/vnd.release-capsule.layer.v1.tar+gzip"
KARGO_MAX_LAYER = 100 * 1024 * 1024
IMAGE_DATE = "2026-03-04T05:06:07Z"  # image_layouts' default config `created`


def raw_manifest(tmp_path: Path, ref: str, creds: str | None = None) -> bytes:
    """``skopeo inspect --raw``: the manifest bytes exactly as the registry serves them."""
    args = ["skopeo", "inspect", "--raw", "--tls-verify=false"]
    if creds:
        args += ["--creds", creds]
    proc = subprocess.run([*args, f"docker://{ref}"], capture_output=True, timeout=60,
                          env=skopeo_env(tmp_path))
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def skopeo_copy_to_dir(tmp_path: Path, ref: str, dest: Path, creds: str | None = None, all_platforms=False) -> Path:
    args = ["copy", "--src-tls-verify=false"]
    if creds:
        args += ["--src-creds", creds]
    if all_platforms:
        args.append("--all")
    skopeo(tmp_path, *args, f"docker://{ref}", f"dir:{dest}")
    assert (dest / "manifest.json").is_file()
    return dest


# -- publishing for real -----------------------------------------------------------

def test_publish_pushes_image_layout_then_capsule_and_skopeo_reads_both(registry, repo_name, run_cli, tmp_path):
    layout = il.single_arch(tmp_path / "image", tag=TAG)
    image = f"{registry.host}/{repo_name}"

    out = result_json(run_cli(publish_argv(image, "--image-layout", layout.path)))

    assert out["published"] is True and out["imagePushed"] is True and out["dryRun"] is False
    assert out["imageDigest"] == layout.digest
    assert out["created"] == IMAGE_DATE, "the image's config `created` is the capsule's date"
    client = registry.client()
    assert client.manifest_digest(repo_name, TAG) == layout.digest
    assert client.manifest_digest(capsule_repo(repo_name), TAG) == out["digest"]
    # The image repository is the user's, read by tools we do not control: it
    # gets the image tag and nothing else. The claim registers of both tags
    # (src/commands/publish/claim.rs) are in the capsule repository.
    assert client.tags(repo_name) == [TAG]
    claims = sorted(f"sha256-{d.removeprefix('sha256:')}.claim" for d in (out["digest"], layout.digest))
    assert sorted(client.tags(capsule_repo(repo_name))) == sorted([TAG, *claims])
    for blob in layout.blob_digests:  # every layer, config and manifest made it
        found = client.head_manifest(repo_name, blob) if blob == layout.digest else client.request("HEAD", f"/v2/{repo_name}/blobs/{blob}")
        assert found.status == 200, blob

    capsule_bytes = raw_manifest(tmp_path, f"{registry.host}/{capsule_repo(repo_name)}:{TAG}")
    assert il.digest_of(capsule_bytes) == out["digest"]
    manifest = json.loads(capsule_bytes)
    assert manifest["artifactType"] == CAPSULE_ARTIFACT_TYPE
    assert manifest["layers"][0]["mediaType"] == CAPSULE_LAYER_TYPE
    assert manifest["layers"][0]["digest"] == out["layerDigest"]
    assert il.digest_of(raw_manifest(tmp_path, f"{registry.host}/{repo_name}:{TAG}")) == layout.digest

    capsule_dir = skopeo_copy_to_dir(tmp_path, f"{registry.host}/{capsule_repo(repo_name)}:{TAG}", tmp_path / "capsule-dir")
    layer = (capsule_dir / manifest["layers"][0]["digest"].split(":")[1]).read_bytes()
    assert il.digest_of(layer) == out["layerDigest"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as t:
        assert "release.yaml" in t.getnames()
    skopeo_copy_to_dir(tmp_path, f"{registry.host}/{repo_name}:{TAG}", tmp_path / "image-dir")


def test_multi_arch_image_pushed_by_skopeo_is_named_by_its_index(registry, repo_name, run_cli, tmp_path):
    # Children dated 05:06:07 and 05:09:00; the index carries no date itself.
    layout = il.multi_arch(tmp_path / "image")
    skopeo_push_layout(tmp_path, layout.path, f"{registry.host}/{repo_name}:{TAG}")
    assert registry.client().manifest_digest(repo_name, TAG) == layout.digest

    out = result_json(run_cli(publish_argv(f"{registry.host}/{repo_name}")))

    assert out["imageDigest"] == layout.digest, "a multi-arch image is named by its index digest"
    assert out["imagePushed"] is False
    assert out["created"] == "2026-03-04T05:09:00Z", "an index without a date takes its newest child's"
    index = json.loads(raw_manifest(tmp_path, f"{registry.host}/{repo_name}:{TAG}"))
    assert index["mediaType"] == il.OCI_INDEX and len(index["manifests"]) == 2
    skopeo_copy_to_dir(tmp_path, f"{registry.host}/{capsule_repo(repo_name)}:{TAG}", tmp_path / "capsule-dir")


def test_publish_from_a_layout_tar_pushes_every_platform(registry, repo_name, run_cli, tmp_path):
    layout = il.multi_arch(tmp_path / "image", tag=TAG, index_annotation="2026-05-05T00:00:00Z",
                           layer_sizes=[5 * 1024 * 1024 + 17])  # more than one 4 MiB chunk
    tar = layout.tar(tmp_path / "image.tar")
    shutil.rmtree(layout.path)  # the tar alone must do

    out = result_json(run_cli(publish_argv(f"{registry.host}/{repo_name}", "--image-layout", tar)))

    assert out["imagePushed"] is True and out["imageDigest"] == layout.digest
    assert out["created"] == "2026-05-05T00:00:00Z", "the index's own annotation wins over its children"
    client = registry.client()
    assert client.manifest_digest(repo_name, TAG) == layout.digest
    index = json.loads(client.get_manifest(repo_name, layout.digest).body)
    for child in index["manifests"]:
        m = client.get_manifest(repo_name, child["digest"])
        assert m.status == 200 and il.digest_of(m.body) == child["digest"]
        for blob in [json.loads(m.body)["config"], *json.loads(m.body)["layers"]]:
            got = client.get_blob(repo_name, blob["digest"])
            assert got.status == 200 and il.digest_of(got.body) == blob["digest"] and len(got.body) == blob["size"]
    copied = skopeo_copy_to_dir(tmp_path, f"{registry.host}/{repo_name}:{TAG}", tmp_path / "image-dir", all_platforms=True)
    assert il.digest_of((copied / "manifest.json").read_bytes()) == layout.digest


def test_publish_with_htpasswd_credentials(auth_registry, repo_name, run_cli, tmp_path):
    layout = il.single_arch(tmp_path / "image")
    image = f"{auth_registry.host}/{repo_name}"
    env = {"REGISTRY_USERNAME": auth_registry.username, "REGISTRY_PASSWORD": auth_registry.password}

    proc = run_cli(publish_argv(image, "--image-layout", layout.path), env=env)
    out = result_json(proc)

    assert out["published"] is True and out["imageDigest"] == layout.digest
    assert auth_registry.password not in proc.stdout + proc.stderr
    creds = f"{auth_registry.username}:{auth_registry.password}"
    capsule_ref = f"{auth_registry.host}/{capsule_repo(repo_name)}:{TAG}"
    assert il.digest_of(raw_manifest(tmp_path, capsule_ref, creds=creds)) == out["digest"]
    skopeo_copy_to_dir(tmp_path, capsule_ref, tmp_path / "capsule-dir", creds=creds)
    # The flags work as well as the environment, and a second run is a no-op.
    again = result_json(run_cli(publish_argv(image, "--image-layout", layout.path,
                                             "--registry-username", auth_registry.username,
                                             "--registry-password", auth_registry.password)))
    assert again["published"] is False and again["digest"] == out["digest"]


@pytest.mark.parametrize("creds", ["none", "wrong"])
def test_refused_credentials_are_a_clear_input_error(auth_registry, repo_name, run_cli, tmp_path, creds):
    layout = il.single_arch(tmp_path / "image")
    env = {} if creds == "none" else {"REGISTRY_USERNAME": auth_registry.username, "REGISTRY_PASSWORD": "not-the-password"}

    proc = run_cli(publish_argv(f"{auth_registry.host}/{repo_name}", "--image-layout", layout.path), env=env)

    # Exit 2: the registry answered, and what must change is the credentials
    # the user gave; re-running as is (what exit 3 invites) cannot help.
    assert proc.returncode == 2, proc.stderr
    assert "access denied (401)" in proc.stderr
    if creds == "none":
        assert "no credentials were given" in proc.stderr and "REGISTRY_USERNAME" in proc.stderr
    else:
        assert "check --registry-username/--registry-password" in proc.stderr
        assert "not-the-password" not in proc.stderr + proc.stdout
    client = auth_registry.client()
    assert client.tags(repo_name) == [] and client.tags(capsule_repo(repo_name)) == []


# -- the consumer: a Kargo promotion -------------------------------------------------

def kargo_untar(archive: Path, out: Path) -> tuple[list[str], list[str]]:
    """Kargo's ``untar`` step: entries named with a leading ``./`` or ``/``, a
    ``..`` segment or a backslash are skipped silently; only regular files,
    directories and symlinks may appear. Returns (extracted, skipped)."""
    extracted, skipped = [], []
    with tarfile.open(archive, "r:gz") as t:
        for m in t.getmembers():
            name = m.name
            if name.startswith("./") or name.startswith("/") or "\\" in name or ".." in PurePosixPath(name).parts:
                skipped.append(name)
                continue
            assert m.isfile() or m.isdir() or m.issym(), f"Kargo's untar refuses {name} (type {m.type!r})"
            target = out / name
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif m.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(t.extractfile(m).read())
            extracted.append(name)
    return extracted, skipped


def test_kargo_promotion_consumes_the_capsule(registry, repo_name, run_cli, tmp_path):
    """The production Stage in ../shared/consumers, step by step, against what publish pushed."""
    sha = "1234567890123456789012345678901234567890"  # all digits: YAML must keep it a string
    tag = f"git-{sha}"
    image_repo = f"{registry.host}/{repo_name}"
    capsule = capsule_repo(repo_name)
    layout = il.single_arch(tmp_path / "image")
    result_json(run_cli(publish_argv(image_repo, "--image-layout", layout.path, sha=sha)))
    client = registry.client()

    # Warehouse: both repos subscribed, paired by tag (the Stage's
    # imageFrom(capsuleRepo).Tag == imageFrom(imageRepo).Tag): both must resolve
    # `tag`. Freight holds tag + digest.
    image_digest = client.manifest_digest(repo_name, tag)
    capsule_digest = client.manifest_digest(capsule, tag)
    assert image_digest and capsule_digest

    # oci-download imageRef: capsuleRepo@Digest; layers[0] is the archive.
    got = client.get_manifest(capsule, capsule_digest)
    assert got.status == 200 and il.digest_of(got.body) == capsule_digest
    layer_desc = json.loads(got.body)["layers"][0]
    assert layer_desc["size"] <= KARGO_MAX_LAYER
    layer = client.get_blob(capsule, layer_desc["digest"]).body
    assert il.digest_of(layer) == layer_desc["digest"] and len(layer) == layer_desc["size"]
    archive = tmp_path / "release-capsule.tar.gz"
    archive.write_bytes(layer)

    # untar, with Kargo's rules: nothing may be silently dropped.
    out = tmp_path / "capsule"
    extracted, skipped = kargo_untar(archive, out)
    assert skipped == []
    assert "release.yaml" in extracted

    # yaml-parse with a real YAML 1.1 reader (Helm's, the Go one).
    release = helm_python.values_from_yaml((out / "release.yaml").read_text())
    assert isinstance(release["gitCommit"], str) and release["gitCommit"] == sha

    # The Stage's validation expression, term by term.
    assert release["image"]["repoURL"] == image_repo
    assert release["image"]["tag"] == tag
    assert release["image"]["digest"] == image_digest
    assert release["package"]["kind"] == "helm"
    assert release["package"]["path"] == "package/helm"
    assert tag == "git-" + release["gitCommit"]

    # The copy steps of the metadata files.
    for key in ("sbomPath", "provenancePath"):
        json.loads((out / release["metadata"][key]).read_text())

    # helm-template with image set literally to repoURL@digest.
    image_value = release["image"]["repoURL"] + "@" + release["image"]["digest"]
    with helm_python.Chart.load(out / release["package"]["path"]) as chart:
        rendered = chart.render({"image": image_value}, name="production", namespace="kargo-project-codeai")
    deployments = [text for path, text in rendered.items() if "kind: Deployment" in text]
    assert len(deployments) == 1
    assert f'image: "{image_value}"' in deployments[0]


# -- immutability --------------------------------------------------------------------

def test_republish_uploads_nothing_and_moves_no_tag(registry, repo_name, run_cli, tmp_path, fault_proxy):
    proxy = fault_proxy(registry)  # no faults: just the request log
    image = f"{proxy.host}/{repo_name}"
    layout = il.single_arch(tmp_path / "image")
    first = result_json(run_cli(publish_argv(image, "--image-layout", layout.path)))
    assert first["published"] is True

    for extra in (["--image-layout", layout.path], []):
        proxy.reset()
        again = result_json(run_cli(publish_argv(image, *extra)))
        assert again["published"] is False and again["imagePushed"] is False
        assert again["digest"] == first["digest"]
        assert writes(proxy) == [], [f"{e.method} {e.path}" for e in writes(proxy)]
        # Resolve the image (and read its date), resolve the capsule tag: that is all.
        assert len(proxy.log) <= 4, [f"{e.method} {e.path}" for e in proxy.log]
        assert again["httpRequests"] == len(proxy.log), "the client counts what the proxy saw"
    assert registry.client().manifest_digest(capsule_repo(repo_name), TAG) == first["digest"]


def copy_chart(tmp_path: Path) -> Path:
    chart = tmp_path / "chart"
    shutil.copytree(HELLO_CHART, chart)
    return chart


def build_digest(run_cli, tmp_path: Path, image: str, image_digest: str, chart: Path, created: str, name: str) -> str:
    """What `build` makes from the same inputs (no registry involved)."""
    out = tmp_path / name
    proc = run_cli(["build", "--sha", SHA, "--image", image, "--image-digest", image_digest,
                    "--source-repository", SOURCE, "--package-path", chart, "--created", created,
                    "--output", out, "--json"])
    return result_json(proc)["digest"]


def test_a_different_release_under_the_same_tag_is_refused_unless_overwrite(registry, repo_name, run_cli, tmp_path):
    image = f"{registry.host}/{repo_name}"
    layout = il.single_arch(tmp_path / "image")
    chart = copy_chart(tmp_path)
    first = result_json(run_cli(publish_argv(image, "--image-layout", layout.path, chart=chart)))
    with (chart / "values.yaml").open("a") as f:
        f.write("\n# a change in the chart, same commit\n")
    new_digest = build_digest(run_cli, tmp_path, image, layout.digest, chart, IMAGE_DATE, "built")
    assert new_digest != first["digest"]

    refused = run_cli(publish_argv(image, "--image-layout", layout.path, chart=chart))

    assert refused.returncode == 1, refused.stderr
    assert first["digest"] in refused.stderr and new_digest in refused.stderr, refused.stderr
    assert "--on-conflict overwrite" in refused.stderr and "package.digest" in refused.stderr
    client = registry.client()
    assert client.manifest_digest(capsule_repo(repo_name), TAG) == first["digest"], "the tag did not move"

    moved = result_json(run_cli(publish_argv(image, "--image-layout", layout.path, "--on-conflict", "overwrite", chart=chart)))
    assert moved["published"] is True and moved["digest"] == new_digest
    assert first["digest"] in moved["message"]
    assert client.manifest_digest(capsule_repo(repo_name), TAG) == new_digest


def test_another_capsule_of_the_same_release_is_kept(registry, repo_name, run_cli, tmp_path):
    image = f"{registry.host}/{repo_name}"
    layout = il.single_arch(tmp_path / "image")
    first = result_json(run_cli(publish_argv(image, "--image-layout", layout.path)))
    sbom = tmp_path / "sbom.json"
    sbom.write_text('{"spdxVersion": "SPDX-2.3", "note": "a different SBOM, same release"}')

    kept = result_json(run_cli(publish_argv(image, "--image-layout", layout.path, "--sbom", sbom)))

    assert kept["published"] is False
    assert kept["digest"] == first["digest"], "the report names what the tag points to"
    assert "same release" in kept["message"] and "keeping the published one" in kept["message"]
    assert registry.client().manifest_digest(capsule_repo(repo_name), TAG) == first["digest"]


def test_dry_run_resolves_and_assembles_but_pushes_nothing(registry, repo_name, run_cli, tmp_path, fault_proxy):
    proxy = fault_proxy(registry)
    image = f"{proxy.host}/{repo_name}"
    layout = il.single_arch(tmp_path / "image")

    dry = result_json(run_cli(publish_argv(image, "--image-layout", layout.path, "--dry-run")))

    assert dry["dryRun"] is True and dry["published"] is False and dry["imagePushed"] is False
    assert dry["message"].startswith("dry run, nothing pushed: would push image")
    assert writes(proxy) == [], [f"{e.method} {e.path}" for e in writes(proxy)]
    client = registry.client()
    assert client.tags(repo_name) == [] and client.tags(capsule_repo(repo_name)) == []
    real = result_json(run_cli(publish_argv(image, "--image-layout", layout.path)))
    assert real["digest"] == dry["digest"], "a dry run predicts the digest"


def test_publish_build_and_skopeo_copy_of_build_agree_on_the_digest(registry, repo_name, run_cli, tmp_path):
    image = f"{registry.host}/{repo_name}"
    layout = il.single_arch(tmp_path / "image")
    published = result_json(run_cli(publish_argv(image, "--image-layout", layout.path)))

    built = build_digest(run_cli, tmp_path, image, layout.digest, HELLO_CHART, published["created"], "built")
    assert built == published["digest"]
    copy_repo = f"{repo_name}-skopeo"
    skopeo(tmp_path, "copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'built'}:{TAG}",
           f"docker://{registry.host}/{copy_repo}:{TAG}")
    assert registry.client().manifest_digest(copy_repo, TAG) == published["digest"]


# -- dates ---------------------------------------------------------------------------

def test_an_image_without_a_usable_date_needs_one_given(registry, repo_name, run_cli, tmp_path):
    layout = il.single_arch(tmp_path / "image", created="1970-01-01T00:00:00Z")
    image = f"{registry.host}/{repo_name}"

    refused = run_cli(publish_argv(image, "--image-layout", layout.path))
    assert refused.returncode == 2, refused.stderr
    assert "no usable build date" in refused.stderr
    assert "--created" in refused.stderr and "SOURCE_DATE_EPOCH" in refused.stderr
    client = registry.client()
    assert client.tags(repo_name) == [], "bad input is found before anything is pushed"

    out = result_json(run_cli(publish_argv(image, "--image-layout", layout.path), env={"SOURCE_DATE_EPOCH": "1700000000"}))
    assert out["created"] == "2023-11-14T22:13:20Z"


@pytest.mark.parametrize("where", ["annotation", "label"])
def test_the_image_date_wins_over_a_given_one(registry, repo_name, run_cli, tmp_path, where):
    date = "2026-06-07T08:09:10Z"
    layout = il.single_arch(tmp_path / "image", created=None, **{where: date})

    out = result_json(run_cli(publish_argv(f"{registry.host}/{repo_name}", "--image-layout", layout.path,
                                           "--created", "2020-01-01T00:00:00Z")))

    assert out["created"] == date


# -- bad input -------------------------------------------------------------------------

def test_an_image_that_is_not_there_is_an_input_error(registry, repo_name, run_cli):
    proc = run_cli(publish_argv(f"{registry.host}/{repo_name}"))
    assert proc.returncode == 2, proc.stderr
    assert f"{repo_name}:{TAG} is not in the registry" in proc.stderr and "--image-layout" in proc.stderr
    assert registry.client().tags(capsule_repo(repo_name)) == []


def test_a_layout_never_moves_an_existing_image_tag(registry, repo_name, run_cli, tmp_path):
    image = f"{registry.host}/{repo_name}"
    there = il.single_arch(tmp_path / "there", seed=10)
    skopeo_push_layout(tmp_path, there.path, f"{image}:{TAG}")
    rebuilt = il.single_arch(tmp_path / "rebuilt", seed=11)
    assert rebuilt.digest != there.digest

    proc = run_cli(publish_argv(image, "--image-layout", rebuilt.path))

    assert proc.returncode == 1, proc.stderr
    assert there.digest in proc.stderr and rebuilt.digest in proc.stderr
    client = registry.client()
    assert client.manifest_digest(repo_name, TAG) == there.digest
    assert client.tags(capsule_repo(repo_name)) == []


def _two_images(tmp_path: Path) -> Path:
    a = il.single_arch(tmp_path / "a", seed=20)
    b = il.single_arch(tmp_path / "b", seed=21)
    for blob in (b.path / "blobs" / "sha256").iterdir():
        shutil.copy(blob, a.path / "blobs" / "sha256" / blob.name)
    index = json.loads((a.path / "index.json").read_text())
    index["manifests"] += json.loads((b.path / "index.json").read_text())["manifests"]
    index["manifests"][0]["annotations"] = {il.REF_NAME: "latest"}
    (a.path / "index.json").write_text(json.dumps(index))
    return a.path


def _corrupt_layer(tmp_path: Path) -> Path:
    layout = il.single_arch(tmp_path / "image", layer_sizes=[9 * 1024 * 1024])
    manifest = json.loads(layout.blob(layout.digest).read_bytes())
    layer = layout.blob(manifest["layers"][0]["digest"])
    data = bytearray(layer.read_bytes())
    data[-2000] ^= 0xFF  # same size, different content
    layer.write_bytes(bytes(data))
    return layout.path


def _missing_config(tmp_path: Path) -> Path:
    layout = il.single_arch(tmp_path / "image")
    manifest = json.loads(layout.blob(layout.digest).read_bytes())
    layout.blob(manifest["config"]["digest"]).unlink()
    return layout.path


@pytest.mark.parametrize("make, expected", [
    (_two_images, "names 2 images and none is tagged"),
    (_corrupt_layer, "the image layout is corrupt"),
    (_missing_config, "is missing; the layout is incomplete"),
    (lambda src: (src.mkdir(parents=True), src)[1], "is not an OCI image layout"),
])
def test_a_bad_layout_is_an_input_error_and_leaves_no_tag(registry, repo_name, run_cli, tmp_path, make, expected):
    path = make(tmp_path / "src")
    proc = run_cli(publish_argv(f"{registry.host}/{repo_name}", "--image-layout", path))
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr, proc.stderr
    client = registry.client()
    assert client.tags(repo_name) == [] and client.tags(capsule_repo(repo_name)) == []
