"""`export-freight` and `record-gate` (spec sections 11 and 12): release records
committed to a GitOps repository through the Git Data API of the fake GitHub,
which is backed by a real bare repository and writes with git plumbing. What
lands is read back with `git` itself, and the way code-dot-org's Kargo stages
read it (../shared/consumers), Helm rendering the chart with helm-python."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import threading
from pathlib import Path

import helm_python
import pytest
import yaml

from gitops_support import clone, evaluate, git, log, stage, step, yaml_parse
from verify_support import CREATED, OTHER_SHA, OTHER_TAG, SHA, TAG

OWNER, NAME = "code-dot-org", "k8s-gitops"
REPOSITORY = f"{OWNER}/{NAME}"
FREIGHT = "warehouses/codeai/freight"  # what the source-snapshot stages read
GATE = "warehouses/codeai/legacy-gitflow"  # what the production stage reads
TOKEN = "github_pat_11GITOPS0123456789abcdefghij"
BOT = "github-actions[bot] <41898282+github-actions[bot]@users.noreply.github.com>"
LATER = "2026-11-21T08:00:00Z"
FREIGHT_KEYS = ["schemaVersion", "revision", "tag", "image", "  ref", "  repoURL", "  tag", "  digest", "packageType",
                "package", "  path", "  digest", "capsule", "  repoURL", "  digest", "createdAt"]


@pytest.fixture
def gitops(fake_github):
    return fake_github.git.create(OWNER, NAME)


@pytest.fixture
def cli(run_cli, fake_github):
    """Runs a GitOps command with the token and the fake's API."""
    def run(*args, env=None):
        return run_cli(*args, "--gitops-repository", REPOSITORY, "--json",
                       env={"GITHUB_API_URL": fake_github.url, "GITOPS_TOKEN": TOKEN, **(env or {})})
    return run


def export(cli, capsule: str, *extra, env=None):
    return cli("export-freight", "--capsule", capsule, "--freight-path", FREIGHT, *extra, env=env)


def record_gate(cli, *extra, sha=SHA, branch="production", env=None):
    return cli("record-gate", "--sha", sha, "--branch", branch, "--gate-path", GATE, *extra, env=env)


def tree_digest(root: Path) -> str:
    """Spec section 3's package tree digest, as sha256sum would give it."""
    files = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*") if p.is_file())
    text = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {rel}\n" for rel, p in files)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def same_tree(a: Path, b: Path) -> bool:
    return subprocess.run(["git", "diff", "--no-index", "--quiet", "--", str(a), str(b)]).returncode == 0


def commit_count(gitops) -> int:
    return len(subprocess.run(["git", "--git-dir", str(gitops.path), "rev-list", "main"], capture_output=True,
                              text=True, check=True).stdout.split())


# -- freight ---------------------------------------------------------------------------

def test_an_export_is_one_commit_that_git_reads_back_as_the_spec_says(world, gitops, cli, run_cli, fake_github, tmp_path):
    digest = world.publish()
    before = log(clone(gitops.path, tmp_path / "before"))
    p = export(cli, f"{world.capsule}:{TAG}", "--run-url", "https://github.com/acme/shop/actions/runs/7")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    co = clone(gitops.path, tmp_path / "after")
    commits = log(co)
    assert commits[1:] == before and report["commit"] == commits[0], "exactly one new commit on top"
    release = f"{FREIGHT}/{TAG}"
    assert report["written"] == [f"{release}/", f"{FREIGHT}/current/"]
    changed = git(co, "diff", "--name-only", "HEAD~1", "HEAD").split()
    assert changed and all(c.startswith((f"{release}/", f"{FREIGHT}/current/")) for c in changed), changed
    assert "helm/Chart.yaml" in git(co, "diff", "--stat", "HEAD~1", "HEAD")

    assert same_tree(co / release, co / FREIGHT / "current"), "current/ mirrors git-<sha>/ exactly"
    pulled = tmp_path / "pulled"
    assert run_cli("pull", "--capsule", f"{world.capsule}@{digest}", "--output", pulled).returncode == 0
    assert same_tree(pulled / "package" / "helm", co / release / "helm"), "the capsule's package/helm/, byte for byte"
    release_yaml = yaml.safe_load((pulled / "release.yaml").read_text())

    text = (co / release / "freight.yaml").read_text()
    assert [line.split(":")[0] for line in text.splitlines()] == FREIGHT_KEYS
    assert all(line.endswith('"') for line in text.splitlines() if not line.endswith(":")), text
    freight = yaml.safe_load(text)
    assert tree_digest(co / release / "helm") == freight["package"]["digest"] == release_yaml["package"]["digest"]
    assert freight == {
        "schemaVersion": "release-capsule-freight/v1", "revision": SHA, "tag": TAG,
        "image": {"ref": f"{world.image}@{world.image_digest}", "repoURL": world.image, "tag": TAG,
                  "digest": world.image_digest},
        "packageType": "helm", "package": {"path": "helm", "digest": release_yaml["package"]["digest"]},
        "capsule": {"repoURL": world.capsule, "digest": digest}, "createdAt": CREATED,
    }

    message = git(co, "log", "-1", "--format=%B")
    assert message.startswith(f"Record {TAG}: freight to {FREIGHT}\n"), message
    for needle in (f"- {release}/", f"- {FREIGHT}/current/", f"Capsule: {world.capsule}@{digest}",
                   f"Image: {world.image}@{world.image_digest}", "Run: https://github.com/acme/shop/actions/runs/7"):
        assert needle in message, needle
    assert git(co, "log", "-1", "--format=%an <%ae>|%cn <%ce>").strip() == f"{BOT}|{BOT}"
    subprocess.run(["git", "--git-dir", str(gitops.path), "fsck", "--strict", "--no-dangling"], check=True, capture_output=True)
    fake_github.assert_clean()
    assert not [c for c in fake_github.calls if c.method == "PATCH" and '"force": true' in c.raw_body.decode()]
    assert all(c.authorization == f"Bearer {TOKEN}" for c in fake_github.calls)


def test_exporting_the_same_release_again_makes_no_commit_and_creates_nothing(world, gitops, cli, fake_github):
    world.publish()
    assert export(cli, f"{world.capsule}:{TAG}").returncode == 0
    count, calls = commit_count(gitops), len(fake_github.calls)
    p = export(cli, f"{world.capsule}:{TAG}")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["commit"] is None and report["written"] == []
    assert report["kept"] == [f"{FREIGHT}/{TAG}/", f"{FREIGHT}/current/"]
    assert commit_count(gitops) == count
    assert [c.method for c in fake_github.calls[calls:]] == ["GET"] * len(fake_github.calls[calls:]), "reads only"


def test_the_helm_source_snapshot_stage_reads_and_renders_the_export(world, gitops, cli, tmp_path):
    world.publish()
    assert export(cli, f"{world.capsule}:{TAG}").returncode == 0
    work = tmp_path / "promotion"  # the stage's ./: its git-clone checks out ./freight
    clone(gitops.path, work / "freight")
    changed = git(work / "freight", "diff", "--name-only", "HEAD~1", "HEAD").split()
    variables, steps = stage("source-snapshot-helm/stage-staging.yaml")
    warehouse = yaml.safe_load((Path(__file__).resolve().parents[3] / "shared/consumers/source-snapshot-helm/warehouse.yaml").read_text())
    include = warehouse["spec"]["subscriptions"][0]["git"]["includePaths"]
    assert any(c.startswith(p) for c in changed for p in include), "the Warehouse sees the commit"

    outputs = yaml_parse(step(steps, "yaml-parse", "freight")["config"], work, variables, {})
    assert outputs == {"revision": SHA, "releaseTag": TAG, "packageType": "helm",
                       "imageRef": f"{world.image}@{world.image_digest}"}
    template = step(steps, "helm-template")["config"]
    chart = work / evaluate(template["path"], variables, {})[2:]
    values = {v["key"]: evaluate(v["value"], variables, {}, {"freight": outputs}) for v in template["setValues"]}
    with helm_python.Chart.load(str(chart)) as c:
        rendered = c.render(values, name=evaluate(template["releaseName"], variables, {}))
    deployment = next(v for k, v in rendered.items() if k.endswith("deployment.yaml"))
    assert f'image: "{world.image}@{world.image_digest}"' in deployment


def test_the_kustomize_source_snapshot_stage_finds_its_files(world, gitops, cli, tmp_path):
    package = tmp_path / "kustomize-src"
    (package / "base").mkdir(parents=True)
    (package / "kustomization.yaml").write_text("resources:\n  - base\n")
    (package / "base" / "kustomization.yaml").write_text("resources:\n  - deployment.yaml\n")
    (package / "base" / "deployment.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\n")
    world.kind, world.chart = "kustomize", package
    world.publish()
    assert export(cli, f"{world.capsule}:{TAG}").returncode == 0
    work = tmp_path / "promotion"
    clone(gitops.path, work / "freight")
    variables, steps = stage("source-snapshot-kustomize/stage-staging.yaml")
    assert yaml_parse(step(steps, "yaml-parse", "freight")["config"], work, variables, {}) == {"releaseId": TAG}
    source = work / evaluate(next(s for s in steps if s["uses"] == "copy")["config"]["inPath"], variables, {})[2:]
    assert same_tree(source, package), "current/kustomize holds the package as built"
    assert (source / "base" / "kustomization.yaml").is_file()


def test_current_moves_only_forward_unless_forced(world, gitops, cli, tmp_path):
    older = f"{world.capsule}:{TAG}"
    world.publish()
    other_digest = world.push_image_tag(OTHER_TAG)
    world.publish(sha=OTHER_SHA, image_digest=other_digest, created=LATER)
    assert export(cli, f"{world.capsule}:{OTHER_TAG}").returncode == 0

    p = export(cli, older)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["written"] == [f"{FREIGHT}/{TAG}/"], "the older release gets its own directory, not current/"
    assert "only moves forward" in report["notes"][0] and OTHER_TAG in report["notes"][0]
    co = clone(gitops.path, tmp_path / "a")
    assert yaml.safe_load((co / FREIGHT / "current" / "freight.yaml").read_text())["tag"] == OTHER_TAG

    p = export(cli, older, "--force-current")
    assert p.returncode == 0, p.stderr
    co = clone(gitops.path, tmp_path / "b")
    assert same_tree(co / FREIGHT / "current", co / FREIGHT / TAG)


def test_a_different_release_under_an_existing_name_is_a_conflict(world, gitops, cli, tmp_path):
    world.publish()
    assert export(cli, f"{world.capsule}:{TAG}").returncode == 0
    count = commit_count(gitops)
    chart = tmp_path / "changed-chart"
    shutil.copytree(world.chart, chart)
    (chart / "values.yaml").write_text((chart / "values.yaml").read_text() + "\nextra: true\n")
    world.chart, world.capsule = chart, f"{world.capsule}-rebuilt"
    world.publish()

    p = export(cli, f"{world.capsule}:{TAG}")
    assert p.returncode == 1, p
    assert f"{FREIGHT}/{TAG}/: already holds a different release (it differs in freight.yaml, helm/values.yaml)" in p.stderr
    assert "on-conflict: overwrite" in p.stderr
    assert commit_count(gitops) == count, "nothing committed"

    p = export(cli, f"{world.capsule}:{TAG}", "--on-conflict", "overwrite")
    assert p.returncode == 0, p.stderr
    co = clone(gitops.path, tmp_path / "co")
    assert (co / FREIGHT / TAG / "helm" / "values.yaml").read_text().endswith("extra: true\n")


def test_a_commit_in_between_is_kept_and_the_export_lands_on_top(world, gitops, cli, fake_github, tmp_path):
    world.publish()
    theirs: list[str] = []

    def someone_else_commits(repo):
        if not theirs:
            theirs.append(repo.commit_files("main", {"apps/codeai/values.yaml": b"replicas: 3\n"}, "someone else"))

    fake_github.git.before_ref_update = someone_else_commits
    p = export(cli, f"{world.capsule}:{TAG}")
    assert p.returncode == 0, p.stderr
    assert "moved to" in p.stderr and "planning again" in p.stderr, p.stderr
    co = clone(gitops.path, tmp_path / "co")
    ours = log(co)[0]
    assert git(co, "rev-parse", f"{ours}^").strip() == theirs[0], "ours is on top of theirs"
    assert (co / "apps/codeai/values.yaml").read_text() == "replicas: 3\n"
    assert (co / FREIGHT / "current" / "freight.yaml").is_file()
    updates = [c for c in fake_github.calls if c.operation == "git/update-ref"]
    assert [c.status for c in updates] == [422, 200]
    fake_github.assert_clean()


def test_concurrent_writers_never_lose_a_commit(world, gitops, cli, fake_github, tmp_path):
    world.publish()
    other_digest = world.push_image_tag(OTHER_TAG)
    world.publish(sha=OTHER_SHA, image_digest=other_digest, created=LATER)
    # Slow ref updates, so that the writers' plans overlap.
    fake_github.hold = lambda call: 0.3 if call.method == "PATCH" else 0
    jobs = [
        lambda: export(cli, f"{world.capsule}:{TAG}"),
        lambda: export(cli, f"{world.capsule}:{OTHER_TAG}"),
        lambda: record_gate(cli, "--merged-at", "2026-11-20T12:00:00Z"),
        lambda: record_gate(cli, "--merged-at", "2026-11-20T12:00:00Z", branch="staging", sha=OTHER_SHA),
    ]
    results: list = [None] * len(jobs)
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, jobs[i]())) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    co = clone(gitops.path, tmp_path / "co")
    assert len(log(co)) == 1 + len(jobs), "every writer's commit, none lost"
    commits = {json.loads(r.stdout)["commit"] for r in results}
    assert commits <= set(log(co)) and None not in commits
    for path in (f"{FREIGHT}/{TAG}/freight.yaml", f"{FREIGHT}/{OTHER_TAG}/freight.yaml",
                 f"{GATE}/production/merged/{TAG}.yaml", f"{GATE}/staging/merged/{OTHER_TAG}.yaml"):
        assert (co / path).is_file(), path
    assert yaml.safe_load((co / FREIGHT / "current/freight.yaml").read_text())["tag"] == OTHER_TAG, "the newer release"
    assert sum(c.status == 422 for c in fake_github.calls if c.operation == "git/update-ref") >= 1, "they did collide"
    fake_github.assert_clean()


# -- gate records ------------------------------------------------------------------------

def test_a_gate_record_is_written_once_and_satisfies_the_production_stage(world, gitops, cli, run_cli, tmp_path):
    capsule_digest = world.publish()
    variables, steps = stage("kargo-stage-production.yaml")
    variables.update(imageRepo=world.image, capsuleRepo=world.capsule)
    images = {world.image: {"Tag": TAG, "Digest": world.image_digest}, world.capsule: {"Tag": TAG, "Digest": capsule_digest}}
    work = tmp_path / "promotion"  # ./src is the GitOps checkout, ./capsule the downloaded capsule
    assert run_cli("pull", "--capsule", f"{world.capsule}@{capsule_digest}", "--output", work / "capsule").returncode == 0
    gate_step = step(steps, "yaml-parse", "legacy-gate")["config"]
    clone(gitops.path, work / "src")
    with pytest.raises(FileNotFoundError):
        yaml_parse(gate_step, work, variables, images)  # no record, no promotion

    p = record_gate(cli, "--merged-at", "2026-11-20T10:30:00Z")
    assert p.returncode == 0, p.stderr
    merged, current = f"{GATE}/production/merged/{TAG}.yaml", f"{GATE}/production/current.yaml"
    assert json.loads(p.stdout)["written"] == [merged, current]
    shutil.rmtree(work / "src")
    co = clone(gitops.path, work / "src")
    expected = f'revision: "{SHA}"\ntag: "{TAG}"\nmergedAt: "2026-11-20T10:30:00Z"\n'
    assert (co / merged).read_text() == (co / current).read_text() == expected
    assert git(co, "log", "-1", "--format=%s").strip() == f"Record {TAG}: legacy gitflow production gate"

    gate = yaml_parse(gate_step, work, variables, images)
    assert gate == {"revision": SHA, "tag": TAG, "mergedAt": "2026-11-20T10:30:00Z"}
    release = yaml_parse(step(steps, "yaml-parse", "release")["config"], work, variables, images)
    validation = next(s for s in steps if s["uses"] == "copy")["config"]["inPath"]
    outputs = {"legacy-gate": gate, "release": release}
    assert evaluate(validation, variables, images, outputs) == "./capsule/release.yaml", "the stage's gate expression holds"
    assert evaluate(validation, variables, images, {**outputs, "legacy-gate": {**gate, "revision": OTHER_SHA}}) \
        == "./capsule/__validation_failed__", "and would not for another revision"

    # A re-run of the same push: no commit.
    count = commit_count(gitops)
    p = record_gate(cli, "--merged-at", "2026-11-20T10:30:00Z")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["commit"] is None and commit_count(gitops) == count
    # The same revision pushed again later: the record is kept as it is,
    # mergedAt included; current.yaml says when the branch got it last.
    p = record_gate(cli, "--merged-at", "2026-11-22T00:00:00Z")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["written"] == [current]
    co = clone(gitops.path, tmp_path / "again")
    assert (co / merged).read_text() == expected
    assert (co / current).read_text() == expected.replace("2026-11-20T10:30:00Z", "2026-11-22T00:00:00Z")


# -- bad input ---------------------------------------------------------------------------

BAD = {
    "no token": (dict(env={"GITOPS_TOKEN": None}), 2, "GITOPS_TOKEN is not set: export a token that may write to code-dot-org/k8s-gitops"),
    "read-only token": (dict(grant="read"), 2, "the token may not create tree (403: Resource not accessible by personal access token); it needs Contents: read and write on code-dot-org/k8s-gitops"),
    "hidden repository": (dict(grant="none"), 2, "code-dot-org/k8s-gitops: not found, or hidden from the token"),
    "unknown branch": (dict(extra=("--gitops-branch", "deploy")), 2, "code-dot-org/k8s-gitops: has no branch deploy"),
    "path outside": (dict(path="../elsewhere/freight"), 2, '--freight-path: "../elsewhere/freight": `..` leaves the repository'),
    "GitHub unreachable": (dict(env={"GITHUB_API_URL": "http://127.0.0.1:9"}), 3, "error: get branch: "),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_named_and_nothing_is_committed(case, world, gitops, cli, fake_github):
    options, code, message = BAD[case]
    world.publish()
    if "grant" in options:
        fake_github.git.grant(OWNER, NAME, TOKEN if options["grant"] == "read" else "another-token", "read")
    count = commit_count(gitops)
    p = cli("export-freight", "--capsule", f"{world.capsule}:{TAG}", "--freight-path", options.get("path", FREIGHT),
            *options.get("extra", ()), env=options.get("env"))
    assert p.returncode == code, p
    assert message in p.stderr, p.stderr
    assert TOKEN not in p.stderr + p.stdout
    assert commit_count(gitops) == count
    if case == "path outside":
        assert not fake_github.calls, "refused before anything was asked"


def test_record_gate_without_a_token_is_an_input_error(gitops, cli):
    p = record_gate(cli, env={"GITOPS_TOKEN": None})
    assert p.returncode == 2 and "GITOPS_TOKEN is not set" in p.stderr, p
