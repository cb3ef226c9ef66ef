"""The action's GitOps records: after publishing, the release as Git freight
and the push's gate record, in one commit to the GitOps repository of the fake
GitHub (a real bare repository underneath), reported in the check run, the
outputs and the job summary."""

from __future__ import annotations

import json

import yaml

from action_support import one_check_run, seed_image
from gitops_support import clone, git, log
from test_action import TOKEN, assert_no_secret, step, workspace  # noqa: F401 (fixtures)

GITOPS_TOKEN = "github_pat_11GITOPS9876543210zyxwvutsrqp"
FREIGHT = "warehouses/codeai/freight"
GATE = "warehouses/codeai/legacy-gitflow"
# events/push.json: repository.pushed_at, as RFC 3339.
PUSHED_AT = "2019-05-15T15:20:57Z"


def configure(step, **inputs):
    repo = step.github.git.create("code-dot-org", "k8s-gitops")
    step.inputs(**{"gitops_repository": "code-dot-org/k8s-gitops", "gitops_token": GITOPS_TOKEN, "freight_path": FREIGHT,
                   "gate_path": GATE, **inputs})
    step.env["GITHUB_REF"] = "refs/heads/production"
    return repo


def test_a_push_to_a_gate_branch_records_freight_and_gate_in_one_commit(step, tmp_path):
    repo = configure(step)
    seed_image(step.registry, step.image.split("/", 1)[1], step.sha)
    r = step.run()
    assert r.returncode == 0, r
    co = clone(repo.path, tmp_path / "co")
    assert len(log(co)) == 2, "one commit on top of the initial one"
    assert r.outputs["gitops-commit"] == log(co)[0]
    tag = f"git-{step.sha}"
    changed = set(git(co, "diff", "--name-only", "HEAD~1", "HEAD").split())
    assert f"{FREIGHT}/{tag}/freight.yaml" in changed and f"{FREIGHT}/current/freight.yaml" in changed
    assert {f"{GATE}/production/merged/{tag}.yaml", f"{GATE}/production/current.yaml"} <= changed
    freight = yaml.safe_load((co / FREIGHT / tag / "freight.yaml").read_text())
    assert freight["capsule"] == {"repoURL": step.capsule, "digest": r.outputs["digest"]}
    assert (co / FREIGHT / tag / "helm" / "Chart.yaml").is_file()
    gate = yaml.safe_load((co / GATE / "production" / "merged" / f"{tag}.yaml").read_text())
    assert gate == {"revision": step.sha, "tag": tag, "mergedAt": PUSHED_AT}, "mergedAt is the push time"
    message = git(co, "log", "-1", "--format=%B")
    assert message.startswith(f"Record {tag}: freight to {FREIGHT}, legacy gitflow production gate\n"), message
    assert "Run: https://github.com/Codertocat/Hello-World/actions/runs/1234567890" in message

    run = one_check_run(step.github)
    assert run["conclusion"] == "success"
    assert run["output"]["title"].endswith(f"; recorded in code-dot-org/k8s-gitops ({log(co)[0][:7]})"), run["output"]["title"]
    assert f"**GitOps records** committed to `code-dot-org/k8s-gitops` `main` as `{log(co)[0]}`" in r.summary
    assert f"- wrote `{GATE}/production/current.yaml`" in run["output"]["summary"]
    assert f"::add-mask::{GITOPS_TOKEN}" in r.stdout
    assert_no_secret(r, TOKEN)
    assert GITOPS_TOKEN not in r.summary + r.output_text + r.stderr
    writes = [c for c in step.github.calls if c.operation and c.operation.startswith("git/") and c.method != "GET"]
    assert writes and all(c.authorization == f"Bearer {GITOPS_TOKEN}" for c in writes)
    step.github.assert_clean()

    # A re-run of the same job: already recorded, no second commit.
    again = step.run()
    assert again.returncode == 0, again
    assert len(log(clone(repo.path, tmp_path / "again"))) == 2
    assert again.outputs["gitops-commit"] == ""
    assert "**GitOps records** already recorded in `code-dot-org/k8s-gitops` `main`: no commit." in again.summary


def test_a_pull_request_writes_nothing_and_needs_no_token(step, tmp_path):
    repo = configure(step)
    step.event("pull_request")
    step.inputs(gitops_repository="code-dot-org/k8s-gitops", freight_path=FREIGHT, gate_path=GATE, gitops_token="")
    head = json.loads((step.events / "pull_request.json").read_text())["pull_request"]["head"]["sha"]
    seed_image(step.registry, step.image.split("/", 1)[1], head)
    r = step.run()
    assert r.returncode == 0, r
    assert len(log(clone(repo.path, tmp_path / "co"))) == 1
    assert not [c for c in step.github.calls if c.operation and c.operation.startswith("git/")]
    assert "freight-path: nothing is exported on this run" in r.stdout
    assert "gitops-commit" not in r.outputs


def test_a_push_to_another_branch_exports_freight_without_a_gate_record(step, tmp_path):
    repo = configure(step)
    step.env["GITHUB_REF"] = "refs/heads/main"
    seed_image(step.registry, step.image.split("/", 1)[1], step.sha)
    r = step.run()
    assert r.returncode == 0, r
    co = clone(repo.path, tmp_path / "co")
    assert (co / FREIGHT / "current" / "freight.yaml").is_file()
    assert not (co / GATE).exists()
    assert "only a push to one of staging, test, levelbuilder, production writes one" in r.stdout


def test_a_token_that_cannot_write_fails_the_step_after_publishing(step, tmp_path):
    repo = configure(step)
    step.github.git.grant("code-dot-org", "k8s-gitops", GITOPS_TOKEN, "read")
    seed_image(step.registry, step.image.split("/", 1)[1], step.sha)
    r = step.run()
    assert r.returncode == 2, r
    assert r.outputs["published"] == "true", "the capsule itself was published"
    assert len(log(clone(repo.path, tmp_path / "co"))) == 1, "no partial commit"
    run = one_check_run(step.github)
    assert run["conclusion"] == "failure"
    assert run["output"]["title"].startswith(f"git-{step.sha[:7]} in the registry; GitOps records failed: code-dot-org/k8s-gitops: the token may not"), run["output"]["title"]
    assert "Contents: read and write" in r.summary
    assert [s["state"] for s in step.github.statuses()][-1] == "failure"
    assert GITOPS_TOKEN not in r.stdout.replace(f"::add-mask::{GITOPS_TOKEN}", "") + r.summary + r.stderr


def test_missing_gitops_token_is_a_bad_input(step):
    configure(step, gitops_token="")
    r = step.run()
    assert r.returncode == 2, r
    assert "input gitops-token: is required: GITHUB_TOKEN cannot write to another repository" in r.stdout
    assert not step.github.check_runs(), "bad input reports nothing"
