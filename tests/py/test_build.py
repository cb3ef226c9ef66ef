"""`release-capsule build` read back by real peers: Python tarfile, skopeo,
Helm (helm-python-sdk), coreutils and the official SPDX 2.3 JSON schema."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import jsonschema
import pytest

SHA = "4a5b6c7d8e9f00112233445566778899aabbccdd"
TAG = f"git-{SHA}"
IMAGE = "ghcr.io/acme/hello"
IMAGE_DIGEST = "sha256:" + hashlib.sha256(b"hello image").hexdigest()


def build(run_cli, chart: Path, out: Path, *extra: str, env=None):
    proc = run_cli(
        "build", "--sha", SHA, "--image", IMAGE, "--image-digest", IMAGE_DIGEST,
        "--source-repository", "https://github.com/acme/hello",
        "--package-path", chart, "--output", out, "--created", "2026-11-20T10:11:12Z",
        "--json", *extra, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


@pytest.fixture
def built(run_cli, repo_root, tmp_path):
    out = tmp_path / "oci"
    report = build(run_cli, repo_root / "examples/charts/hello", out, "--unpacked", tmp_path / "unpacked")
    return out, report


def test_tarfile_reads_an_archive_that_obeys_section_2(built):
    out, report = built
    layer = blob(out, report["layerDigest"]).read_bytes()
    # gzip header: no file name or comment flags, mtime 0.
    assert layer[:4] == b"\x1f\x8b\x08\x00" and layer[4:8] == b"\0\0\0\0"
    with tarfile.open(fileobj=__import__("io").BytesIO(layer), mode="r:gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    seen_dirs = set()
    for m in members:
        assert not m.name.startswith(("./", "/")) and ".." not in m.name.split("/") and "\\" not in m.name, m.name
        assert m.type in (tarfile.REGTYPE, tarfile.DIRTYPE), (m.name, m.type)
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0), m.name
        assert m.mode == (0o755 if m.isdir() else 0o644), m.name
        parent = m.name.rsplit("/", 1)[0] if "/" in m.name else None
        assert parent is None or parent in seen_dirs, f"{m.name} comes before its parent"
        if m.isdir():
            seen_dirs.add(m.name)
    # Depth-first with siblings in byte order: sorting path components gives the same order.
    assert names == sorted(names, key=lambda n: [p.encode() for p in n.split("/")])
    top = {n.split("/")[0] for n in names}
    assert top == {"release.yaml", "package", "metadata"}
    assert {"metadata/sbom.json", "metadata/provenance.json", "package/helm/Chart.yaml"} <= set(names)
    assert report["layerSize"] == len(layer)
    assert report["layerDigest"] == "sha256:" + hashlib.sha256(layer).hexdigest()


def test_skopeo_inspects_and_copies_the_layout(built, skopeo, tmp_path):
    out, report = built
    raw = subprocess.run([skopeo, "inspect", "--raw", f"oci:{out}:{TAG}"], check=True, capture_output=True).stdout
    assert raw == blob(out, report["digest"]).read_bytes()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == report["digest"]
    manifest = json.loads(raw)
    assert manifest["artifactType"] == "application/vnd.release-capsule.v1"
    assert manifest["config"] == {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2,
    }
    # Layer 0 the capsule archive, layer 1 the Helm chart (spec section 5).
    assert [l["mediaType"] for l in manifest["layers"]] == [
        "application/vnd.release-capsule.layer.v1.tar+gzip", "application/vnd.cncf.helm.chart.content.v1.tar+gzip"]
    assert manifest["layers"][0]["annotations"] == {"org.opencontainers.image.title": "release-capsule.tar.gz"}
    ann = manifest["annotations"]
    assert list(ann) == sorted(ann)
    assert ann["org.opencontainers.image.revision"] == SHA
    assert ann["org.opencontainers.image.created"] == "2026-11-20T10:11:12Z"
    assert ann["vnd.release-capsule.image"] == f"{IMAGE}@{IMAGE_DIGEST}"
    assert ann["vnd.release-capsule.package.digest"] == report["packageDigest"]
    assert "subject" not in manifest
    # Compact serialization, as pushed.
    assert raw == json.dumps(manifest, separators=(",", ":")).encode()

    copied = tmp_path / "copied"
    subprocess.run([skopeo, "copy", "--quiet", f"oci:{out}:{TAG}", f"dir:{copied}"], check=True)
    assert (copied / "manifest.json").read_bytes() == raw
    for d in [manifest["config"]["digest"], *(l["digest"] for l in manifest["layers"])]:
        assert (copied / d.removeprefix("sha256:")).read_bytes() == blob(out, d).read_bytes()


def test_helm_loads_renders_and_lints_the_packaged_chart(built, tmp_path):
    import helm_python

    out, report = built
    extracted = tmp_path / "extracted"
    with tarfile.open(blob(out, report["layerDigest"]), "r:gz") as tar:
        tar.extractall(extracted, filter="data")
    chart_dir = extracted / "package" / "helm"
    assert helm_python.lint(str(chart_dir))["errors"] == []
    image = f"{IMAGE}@{IMAGE_DIGEST}"
    with helm_python.Chart.load(str(chart_dir)) as chart:
        rendered = chart.render({"image": image})
    deployment = next(v for k, v in rendered.items() if k.endswith("deployment.yaml"))
    assert f'image: "{image}"' in deployment
    # --unpacked wrote the same tree.
    for f in extracted.rglob("*"):
        twin = tmp_path / "unpacked" / f.relative_to(extracted)
        assert twin.exists(), twin
        if f.is_file():
            assert twin.read_bytes() == f.read_bytes()


def test_package_digest_equals_the_coreutils_one_liner(built, tmp_path):
    out, report = built
    one_liner = "find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum"
    got = subprocess.run(["bash", "-c", one_liner], cwd=tmp_path / "unpacked/package/helm",
                         check=True, capture_output=True, text=True).stdout.split()[0]
    assert report["packageDigest"] == f"sha256:{got}"
    release = (tmp_path / "unpacked/release.yaml").read_text()
    assert f'  digest: "sha256:{got}"' in release


def test_generated_sbom_validates_against_spdx_2_3(built, shared_dir, tmp_path):
    schema = json.loads((shared_dir / "schemas/spdx-2.3.schema.json").read_text())
    sbom = json.loads((tmp_path / "unpacked/metadata/sbom.json").read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(sbom)
    assert sbom["creationInfo"]["created"] == "2026-11-20T10:11:12Z"
    files = {f["fileName"]: f for f in sbom["files"]}
    chart_yaml = (tmp_path / "unpacked/package/helm/Chart.yaml").read_bytes()
    sha256 = {c["algorithm"]: c["checksumValue"] for c in files["./package/helm/Chart.yaml"]["checksums"]}
    assert sha256["SHA256"] == hashlib.sha256(chart_yaml).hexdigest()
    image = next(p for p in sbom["packages"] if p["SPDXID"] == "SPDXRef-Image")
    purl = image["externalRefs"][0]["referenceLocator"]
    assert purl == f"pkg:oci/hello@{IMAGE_DIGEST}?repository_url={IMAGE}"
    assert {"spdxElementId": "SPDXRef-Package", "relationshipType": "DEPENDS_ON",
            "relatedSpdxElement": "SPDXRef-Image"} in sbom["relationships"]


def test_generated_provenance_is_an_slsa_v1_statement(built, tmp_path, repo_root):
    out, report = built
    prov = json.loads((tmp_path / "unpacked/metadata/provenance.json").read_text())
    assert prov["_type"] == "https://in-toto.io/Statement/v1"
    assert prov["predicateType"] == "https://slsa.dev/provenance/v1"
    assert prov["subject"] == [{"name": "package/helm", "digest": {"sha256": report["packageDigest"].removeprefix("sha256:")}}]
    bd = prov["predicate"]["buildDefinition"]
    assert bd["externalParameters"]["commit"] == SHA
    assert bd["externalParameters"]["packagePath"] == "examples/charts/hello"
    assert bd["resolvedDependencies"] == [
        {"uri": f"git+https://github.com/acme/hello@{SHA}", "digest": {"gitCommit": SHA}},
        {"uri": f"oci://{IMAGE}:{TAG}", "digest": {"sha256": IMAGE_DIGEST.removeprefix("sha256:")}},
    ]
    assert prov["predicate"]["runDetails"]["builder"]["id"].startswith("https://")


def test_user_sbom_and_provenance_are_used_verbatim_and_must_be_json(run_cli, repo_root, tmp_path):
    sbom = tmp_path / "my-sbom.json"
    sbom.write_text('{"bomFormat": "CycloneDX", "specVersion": "1.6"}\n')
    prov = tmp_path / "my-prov.json"
    prov.write_text("{\n  \"oops\": \n}\n")
    chart = repo_root / "examples/charts/hello"
    proc = run_cli("build", "--sha", SHA, "--image", IMAGE, "--image-digest", IMAGE_DIGEST,
                   "--source-repository", "https://github.com/acme/hello", "--package-path", chart,
                   "--output", tmp_path / "o", "--created", "2026-11-20T10:11:12Z",
                   "--sbom", sbom, "--provenance", prov)
    assert proc.returncode == 2
    assert f"provenance {prov}: is not valid JSON at line 3" in proc.stderr
    assert not (tmp_path / "o").exists()
    prov.write_text('{"_type": "mine"}')
    build(run_cli, chart, tmp_path / "o", "--sbom", sbom, "--provenance", prov, "--unpacked", tmp_path / "u")
    assert (tmp_path / "u/metadata/sbom.json").read_bytes() == sbom.read_bytes()
    assert (tmp_path / "u/metadata/provenance.json").read_bytes() == prov.read_bytes()


@pytest.mark.skipif(shutil.which("faketime") is None, reason="faketime not installed; run scripts/bootstrap")
def test_builds_on_different_days_and_time_zones_are_identical(run_cli, repo_root, tmp_path, bin_path):
    chart = repo_root / "examples/charts/hello"
    reports = []
    for i, (day, tz) in enumerate([("2020-01-01 00:00:00", "UTC"), ("2031-07-15 23:59:59", "Pacific/Kiritimati")]):
        out = tmp_path / f"oci-{i}"
        proc = subprocess.run(
            ["faketime", day, str(bin_path), "build", "--sha", SHA, "--image", IMAGE, "--image-digest", IMAGE_DIGEST,
             "--source-repository", "https://github.com/acme/hello", "--package-path", str(chart),
             "--output", str(out), "--json"],
            env={"PATH": "/usr/bin:/bin", "TZ": tz, "SOURCE_DATE_EPOCH": "1795169472"},
            capture_output=True, text=True, check=True)
        reports.append(json.loads(proc.stdout))
    assert reports[0] == reports[1]
    assert reports[0]["created"] == "2026-11-20T10:11:12Z"


def test_kustomize_tree(run_cli, tmp_path):
    tree = tmp_path / "kust"
    (tree / "base").mkdir(parents=True)
    (tree / "kustomization.yaml").write_text("resources:\n  - base/deployment.yaml\n")
    (tree / "base/deployment.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n")
    report = build(run_cli, tree, tmp_path / "oci", "--package-kind", "kustomize", "--unpacked", tmp_path / "u")
    assert report["packageKind"] == "kustomize"
    release = (tmp_path / "u/release.yaml").read_text()
    assert 'kind: "kustomize"\n  path: "package/kustomize"' in release
    assert "chart:" not in release
    assert (tmp_path / "u/package/kustomize/base/deployment.yaml").exists()


def test_large_package_streams_and_reports_progress(run_cli, tmp_path):
    """A chart near Kargo's limits builds; stderr says what happens."""
    chart = tmp_path / "big"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: big\nversion: 0.1.0\nappVersion: '1'\n")
    for i in range(300):
        (chart / "templates" / f"cm-{i:04}.yaml").write_bytes(b"# " + bytes(range(256)) * 100 + b"\n")
    proc = run_cli("build", "--sha", SHA, "--image", IMAGE, "--image-digest", IMAGE_DIGEST,
                   "--source-repository", "https://github.com/acme/hello", "--package-path", chart,
                   "--output", tmp_path / "oci", "--created", "2026-11-20T10:11:12Z")
    assert proc.returncode == 0, proc.stderr
    assert "301 files" in proc.stderr and "package digest sha256:" in proc.stderr
    assert "capsule  ghcr.io/acme/hello-release-capsule:" + TAG in proc.stdout


def test_package_holds_exactly_what_helm_package_takes(run_cli, tmp_path):
    """`.helmignore` and Helm's defaults, compared with Helm's own `package`."""
    import helm_python

    chart = tmp_path / "c"
    for rel, text in {
        "Chart.yaml": "apiVersion: v2\nname: c\nversion: 0.1.0\n",
        "values.yaml": "a: 1\n",
        "templates/a.yaml": "kind: ConfigMap\n",
        "templates/.hidden": "left out by Helm's default rule\n",
        "templates/sub/b.yaml": "kind: ConfigMap\n",
        "extra.txt": "x\n",
        "docs/readme.md": "d\n",
        "ci/values-test.yaml": "b: 2\n",
        ".helmignore": "*.txt\ndocs/\n/ci\n",
    }.items():
        (chart / rel).parent.mkdir(parents=True, exist_ok=True)
        (chart / rel).write_text(text)
    tgz = helm_python.package(str(chart), destination=str(tmp_path))
    with tarfile.open(tgz) as t:
        helms = sorted(m.name.removeprefix("c/") for m in t.getmembers() if m.isfile())
    # VCS folders: Helm packages them unless .helmignore says otherwise; the
    # spec leaves them out always (a .git/ has no business in a release).
    (chart / ".git").mkdir()
    (chart / ".git/HEAD").write_text("ref: refs/heads/main\n")
    build(run_cli, chart, tmp_path / "oci", "--unpacked", tmp_path / "u")
    ours = sorted(str(p.relative_to(tmp_path / "u/package/helm")) for p in (tmp_path / "u/package/helm").rglob("*") if p.is_file())
    assert ours == helms == [".helmignore", "Chart.yaml", "templates/a.yaml", "templates/sub/b.yaml", "values.yaml"]


def test_helm_negation_quirk_is_shared(run_cli, tmp_path):
    """In Helm, a `!pattern` rule ignores every path it does not match, so even
    Chart.yaml goes; both Helm and we then refuse the chart."""
    import helm_python

    chart = tmp_path / "c"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    (chart / "keep.txt").write_text("k\n")
    (chart / ".helmignore").write_text("*.txt\n!keep.txt\n")
    with pytest.raises(helm_python.HelmError, match="Chart.yaml file is missing"):
        helm_python.package(str(chart), destination=str(tmp_path))
    proc = run_cli("build", "--sha", SHA, "--image", IMAGE, "--image-digest", IMAGE_DIGEST,
                   "--source-repository", "https://github.com/acme/hello", "--package-path", chart,
                   "--output", tmp_path / "oci", "--created", "2026-11-20T10:11:12Z")
    assert proc.returncode == 2 and "Chart.yaml: missing" in proc.stderr, proc.stderr
