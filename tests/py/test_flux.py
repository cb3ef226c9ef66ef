"""Flux as a consumer (spec section 5, layer 1): the rules Flux and Helm apply
to what they pull, ported from their Go sources (each port cites its source),
run on capsules `publish` pushed to the real registry; then Helm itself
loads and renders layer 1, and the Flux YAML of deploy/flux/ (which
docs/flux.md shows as it is, checked by test_docs.py) is checked against the
capsule it would read."""

from __future__ import annotations

import gzip
import io
import re
import tarfile
from pathlib import Path

import helm_python
import pytest
import yaml

import image_layouts as il
from publish_support import HELLO_CHART, SHA, capsule_repo, publish_argv, result_json

ROOT = Path(__file__).resolve().parents[2]
CAPSULE_LAYER = "application/vnd.release-capsule.layer.v1.tar+gzip"
CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


# -- ports ------------------------------------------------------------------------

def flux_select_layer(manifest: dict, media_type: str | None) -> dict:
    """fluxcd/source-controller internal/controller/ocirepository_controller.go,
    selectLayer: the first layer of the selector's media type, else layers[0]."""
    layers = manifest["layers"]
    if not layers:
        raise ValueError("no layers found in artifact")
    if media_type:
        for layer in layers:
            if layer["mediaType"] == media_type:
                return layer
        raise ValueError(f"failed to find layer with media type '{media_type}' in artifact")
    return layers[0]


def _raw_tar_entries(data: bytes):
    """(typeflag, name) of every header, as Go's archive/tar reports them: GNU
    long names ('L') fold into the next header; PAX headers ('x', 'g') are
    returned as they are, because a PAX global header is an entry Go's reader
    hands back ('g'), which fluxcd/pkg's Untar then refuses."""
    pos, long_name = 0, None
    while pos + 512 <= len(data):
        header = data[pos:pos + 512]
        if header == b"\0" * 512:
            return
        name = header[0:100].split(b"\0", 1)[0].decode()
        prefix = header[345:500].split(b"\0", 1)[0].decode() if header[257:262] == b"ustar" and header[263:265] == b"00" else ""
        typeflag = chr(header[156]) if header[156] else "0"
        size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        body = data[pos + 512:pos + 512 + size]
        pos += 512 + (size + 511) // 512 * 512
        if typeflag == "L":
            long_name = body.split(b"\0", 1)[0].decode()
            continue
        full = long_name or (f"{prefix}/{name}" if prefix else name)
        long_name = None
        yield typeflag, full, body


def flux_untar(layer: bytes, max_size: int = 100 << 20) -> dict[str, bytes]:
    """fluxcd/pkg tar/untar.go, Untar (without WithSkipSymlinks): names must be
    relative without "../" or "\\"; regular files and directories only, a
    symlink or any other type (a PAX global header included) fails; 100 MiB."""
    files: dict[str, bytes] = {}
    processed = 0
    for typeflag, name, body in _raw_tar_entries(gzip.decompress(layer)):
        processed += len(body)
        if processed > max_size:
            raise ValueError(f"tar {name!r} is bigger than max archive size of {max_size} bytes")
        if name == "" or "\\" in name or name.startswith("/") or "../" in name:
            raise ValueError(f"tar contained invalid name error {name!r}")
        if typeflag in ("0", "7"):
            files[name] = body
        elif typeflag == "5":
            continue
        elif typeflag == "2":
            raise ValueError(f"tar file entry {name} is a symlink, which is not allowed in this context")
        else:
            raise ValueError(f"tar file entry {name} contained unsupported file type {typeflag!r}")
    return files


def helm_load_archive_files(layer: bytes) -> dict[str, bytes]:
    """helm/helm pkg/chart/loader/archive.go, LoadArchiveFiles: every file's
    first path element is dropped (the chart's directory); a file at the root
    is "content outside the base directory", a Chart.yaml at the root is
    refused, ".." is refused; PAX headers are skipped."""
    out = {}
    for typeflag, name, body in _raw_tar_entries(gzip.decompress(layer)):
        if typeflag in ("5", "x", "g"):
            continue
        parts = name.split("/")
        n = "/".join(parts[1:])
        if n.startswith("/"):
            raise ValueError("chart illegally contains absolute paths")
        clean = re.sub(r"/+", "/", n).strip("/") or "."
        if clean == ".":
            raise ValueError(f"chart illegally contains content outside the base directory: {name!r}")
        if clean.startswith(".."):
            raise ValueError("chart illegally references parent directory")
        if parts[0] == "Chart.yaml":
            raise ValueError("chart yaml not in base directory")
        out[clean] = body
    if not out:
        raise ValueError("no files in chart archive")
    return out


SEMVER = re.compile(r"^v?(0|[1-9]\d*)(\.(0|[1-9]\d*))?(\.(0|[1-9]\d*))?"
                    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$")


def helm_controller_chart_version(chart_version: str, revision: str) -> str:
    """fluxcd/helm-controller 1.0-1.3 internal/controller/helmrelease_controller.go,
    mutateChartWithSourceRevision, for a chartRef to an OCIRepository: a
    `<tag>@<digest>` revision needs the tag to be the chart's SemVer version; a
    bare digest (ref.digest) is fine and becomes the version's build metadata."""
    if not SEMVER.match(chart_version):
        raise ValueError(f"invalid chart version {chart_version}")
    if "@" in revision:
        tag, digest = revision.split("@", 1)
        if not SEMVER.match(tag):
            raise ValueError(f"failed parsing artifact revision {tag}")
        if tag.lstrip("v") != chart_version.lstrip("v"):
            raise ValueError(f"artifact revision {tag} does not match chart version {chart_version}")
    else:
        digest = revision
    algorithm, _, hex_ = digest.partition(":")
    if not algorithm or len(hex_) < 12:
        raise ValueError(f"invalid artifact revision {digest}")
    return f"{chart_version.split('+')[0]}+{hex_[:12]}"


# -- capsules ----------------------------------------------------------------------

@pytest.fixture
def published(registry, repo_name, run_cli, tmp_path):
    """A Helm capsule and a Kustomize capsule, pushed by publish."""
    image = f"{registry.host}/{repo_name}"
    layout = il.single_arch(tmp_path / "image")
    helm = result_json(run_cli(publish_argv(image, "--image-layout", layout.path)))
    kustomize_dir = tmp_path / "kustomize"
    (kustomize_dir / "base").mkdir(parents=True)
    (kustomize_dir / "kustomization.yaml").write_text("resources:\n  - base\n")
    (kustomize_dir / "base" / "kustomization.yaml").write_text("resources:\n  - cm.yaml\n")
    (kustomize_dir / "base" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n")
    kimage = f"{registry.host}/{repo_name}-k"
    layout_k = il.single_arch(tmp_path / "image-k", seed=5)
    kustomize = result_json(run_cli(publish_argv(kimage, "--image-layout", layout_k.path, "--package-kind", "kustomize",
                                                 chart=kustomize_dir)))
    client = registry.client()

    def manifest_and_blob(repo: str, digest: str):
        manifest = client.get_manifest(repo, digest).json()
        return manifest, lambda layer: client.get_blob(repo, layer["digest"]).body

    return {
        "helm": (helm, *manifest_and_blob(capsule_repo(repo_name), helm["digest"])),
        "kustomize": (kustomize, *manifest_and_blob(capsule_repo(f"{repo_name}-k"), kustomize["digest"])),
    }


def test_layer_selection_gives_kargo_and_flux_each_their_layer(published):
    _, manifest, _ = published["helm"]
    assert flux_select_layer(manifest, None)["mediaType"] == CAPSULE_LAYER, "the default (and Kargo's) is layers[0]"
    assert flux_select_layer(manifest, CHART_LAYER)["mediaType"] == CHART_LAYER
    assert flux_select_layer(manifest, CAPSULE_LAYER) == manifest["layers"][0]
    _, kmanifest, _ = published["kustomize"]
    assert [l["mediaType"] for l in kmanifest["layers"]] == [CAPSULE_LAYER], "only a Helm capsule has layer 1"
    with pytest.raises(ValueError, match="failed to find layer"):
        flux_select_layer(kmanifest, CHART_LAYER)


def test_flux_untars_both_layers_and_the_chart_layer_is_package_helm(published):
    report, manifest, blob = published["helm"]
    capsule_files = flux_untar(blob(manifest["layers"][0]))
    chart_files = flux_untar(blob(manifest["layers"][1]))
    package = {k.removeprefix("package/helm/"): v for k, v in capsule_files.items() if k.startswith("package/helm/")}
    assert {k.removeprefix("hello/"): v for k, v in chart_files.items()} == package
    for layer in manifest["layers"]:
        raw = gzip.decompress(blob(layer))
        types = {t for t, _, _ in _raw_tar_entries(raw)}
        assert types <= {"0", "5", "L"}, f"no PAX headers, links or devices: {types}"
        with tarfile.open(fileobj=io.BytesIO(raw)) as t:
            assert t.pax_headers == {} and all(m.pax_headers == {} for m in t.getmembers())
    assert manifest["layers"][1]["annotations"]["org.opencontainers.image.title"] == "hello-0.1.0.tgz"
    assert report["chartLayerDigest"] == manifest["layers"][1]["digest"]


def test_the_ported_rules_refuse_what_flux_and_helm_refuse():
    def layer(*entries) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
            for name, kind in entries:
                info = tarfile.TarInfo(name)
                if kind == "file":
                    info.size = 1
                    t.addfile(info, io.BytesIO(b"x"))
                elif kind == "link":
                    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                    t.addfile(info)
        return gzip.compress(buf.getvalue())

    with pytest.raises(ValueError, match="symlink"):
        flux_untar(layer(("a", "link")))
    with pytest.raises(ValueError, match="invalid name"):
        flux_untar(layer(("x/../../etc", "file")))
    pax = io.BytesIO()
    with tarfile.open(fileobj=pax, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "x"}) as t:
        info = tarfile.TarInfo("a")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match="unsupported file type 'g'"):
        flux_untar(gzip.compress(pax.getvalue()))
    with pytest.raises(ValueError, match="outside the base directory"):
        helm_load_archive_files(layer(("values.yaml", "file")))
    with pytest.raises(ValueError, match="chart yaml not in base directory"):
        helm_load_archive_files(layer(("Chart.yaml/x", "file")))
    assert helm_load_archive_files(layer(("demo/Chart.yaml", "file"))) == {"Chart.yaml": b"x"}


def test_helm_loads_and_renders_layer_1(published, tmp_path):
    _, manifest, blob = published["helm"]
    data = blob(manifest["layers"][1])
    files = helm_load_archive_files(data)
    assert "Chart.yaml" in files and all(not k.startswith("hello/") for k in files)
    archive = tmp_path / manifest["layers"][1]["annotations"]["org.opencontainers.image.title"]
    archive.write_bytes(data)
    image = "ghcr.io/acme/hello@sha256:" + "1" * 64
    with helm_python.Chart.load(str(archive)) as chart:
        assert chart.name == "hello"
        rendered = chart.render({"image": image}, name="app")
    deployment = next(v for k, v in rendered.items() if k.endswith("deployment.yaml"))
    assert f'image: "{image}"' in deployment
    with helm_python.Chart.load_archive(data) as chart:
        assert sorted(chart.render({"image": image}, name="app")) == sorted(rendered)


def test_helm_controller_needs_a_digest_ref_for_git_sha_tags(published):
    report, manifest, _ = published["helm"]
    digest = report["digest"]
    with pytest.raises(ValueError, match=f"failed parsing artifact revision git-{SHA}"):
        helm_controller_chart_version("0.1.0", f"git-{SHA}@{digest}")
    assert helm_controller_chart_version("0.1.0", digest) == f"0.1.0+{digest.removeprefix('sha256:')[:12]}"
    assert helm_controller_chart_version("0.1.0", f"0.1.0@{digest}").startswith("0.1.0+")
    assert not SEMVER.match(f"git-{SHA}"), "ref.semver can never select a git-<sha> tag"


def test_the_flux_yaml_reads_the_capsule(published):
    docs = {}
    for name in ("helmrelease.yaml", "kustomization.yaml"):
        docs[name] = list(yaml.safe_load_all((ROOT / "deploy" / "flux" / name).read_text()))
    oci, release = docs["helmrelease.yaml"]
    assert oci["kind"] == "OCIRepository" and release["spec"]["chartRef"] == {"kind": "OCIRepository", "name": oci["metadata"]["name"]}
    assert oci["spec"]["layerSelector"] == {"mediaType": CHART_LAYER, "operation": "copy"}
    assert oci["spec"]["verify"]["provider"] == "cosign"
    _, manifest, blob = published["helm"]
    chosen = flux_select_layer(manifest, oci["spec"]["layerSelector"]["mediaType"])
    assert helm_load_archive_files(blob(chosen))["Chart.yaml"]
    koci, kustomization = docs["kustomization.yaml"]
    assert kustomization["spec"]["sourceRef"] == {"kind": "OCIRepository", "name": koci["metadata"]["name"]}
    _, kmanifest, kblob = published["kustomize"]
    extracted = flux_untar(kblob(flux_select_layer(kmanifest, koci["spec"]["layerSelector"]["mediaType"])))
    path = kustomization["spec"]["path"].removeprefix("./")
    assert f"{path}/kustomization.yaml" in extracted, sorted(extracted)
    assert HELLO_CHART.is_dir()
