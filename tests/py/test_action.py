"""`release-capsule action` run the way the GitHub runner runs a container
action: inputs as INPUT_<NAME> variables (upper-cased, hyphens kept, "" for an
unset input), GITHUB_* variables, GITHUB_EVENT_PATH pointing at a real webhook
payload, fresh GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files, GITHUB_API_URL at
the fake GitHub (which validates every body against GitHub's own schemas) and
the real docker-registry from the harness."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from action_support import (
    IMAGE_CREATED, assert_requests_valid, input_var, one_check_run, parse_github_output, seed_image,
)
from action_support import assert_no_secret as _assert_no_secret

TOKEN = "ghs_Sup3rS3cretT0kenValue000111222"
MERGE_SHA = "9f2c1e0d8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d"
OLD_SHA = "0123456789abcdef0123456789abcdef01234567"

INPUTS = (
    "image", "capsule-repository", "package-path", "package-kind", "sha", "image-layout", "sbom",
    "provenance", "registry-username", "registry-password", "github-token", "push", "on-conflict",
    "check-name", "status-context", "report", "helm-layer", "signing-key", "gitops-repository", "gitops-branch",
    "gitops-token", "gitops-author", "freight-path", "gate-path", "gate-branches", "preview-config",
)


def test_output_parser_follows_the_runner():
    text = "a=1\n\nb<<EOF\nline 1\r\nline 2\nEOF\nc=x<<y=z\nd<<D\nD\n"
    assert parse_github_output(text) == {"a": "1", "b": "line 1\r\nline 2", "c": "x<<y=z", "d": ""}
    for bad in ("novalue\n", "x<<EOF\nnever closed\n", "=v\n"):
        with pytest.raises(ValueError):
            parse_github_output(bad)


# -- fixtures -----------------------------------------------------------------------

@pytest.fixture
def workspace(tmp_path: Path, helm_chart_factory) -> Path:
    """The checkout: GITHUB_WORKSPACE (and the working directory) with a real
    `helm create` chart at charts/demo."""
    helm_chart_factory("demo", parent=tmp_path / "charts")
    return tmp_path


@pytest.fixture
def step(workspace: Path, shared_dir: Path, fake_github, registry, repo_name, run_cli):
    """A configurable action step. ``step.env`` is what the runner would pass;
    ``step.run()`` runs it and returns a Result."""
    return Step(workspace, shared_dir, fake_github, registry, repo_name, run_cli)


class Result:
    def __init__(self, proc, step: "Step"):
        self.proc = proc
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.output_text = step.output_file.read_text()
        self.outputs = parse_github_output(self.output_text)
        self.summary = step.summary_file.read_text()

    def __repr__(self):
        return f"<exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}>"

    def commands(self, name: str) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.startswith(f"::{name}")]


class Step:
    def __init__(self, workspace, shared_dir, fake_github, registry, repo_name, run_cli):
        self.workspace = workspace
        self.events = shared_dir / "github-api" / "events"
        self.github = fake_github
        self.registry = registry
        self.image = f"{registry.host}/{repo_name}"
        self.capsule = f"{self.image}-release-capsule"
        self.run_cli = run_cli
        files = workspace.parent / f"{workspace.name}-runner"
        files.mkdir(exist_ok=True)
        self.output_file = files / "set_output"
        self.summary_file = files / "step_summary"
        self.output_file.write_text("")
        self.summary_file.write_text("")
        self.env: dict[str, str] = {}
        self.event("push")

    def event(self, name: str, payload: dict | None = None, **env) -> None:
        """Sets GITHUB_* (and every input, "" when unset) for an event."""
        path = self.events / f"{'pull_request' if name.startswith('pull_request') else name}.json"
        if payload is not None:
            path = self.output_file.parent / f"{name}-event.json"
            path.write_text(json.dumps(payload))
        data = json.loads(path.read_text())
        sha = data.get("after") if name == "push" else MERGE_SHA
        self.env = {
            "GITHUB_ACTIONS": "true",
            "CI": "true",
            "GITHUB_EVENT_NAME": name,
            "GITHUB_EVENT_PATH": str(path),
            "GITHUB_SHA": sha,
            "GITHUB_REF": data.get("ref", "refs/pull/2/merge"),
            "GITHUB_REPOSITORY": data["repository"]["full_name"],
            "GITHUB_REPOSITORY_OWNER": data["repository"]["owner"]["login"],
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_API_URL": self.github.url,
            "GITHUB_RUN_ID": "1234567890",
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_ACTOR": data["sender"]["login"],
            "GITHUB_WORKSPACE": str(self.workspace),
            "GITHUB_OUTPUT": str(self.output_file),
            "GITHUB_STEP_SUMMARY": str(self.summary_file),
            "RUNNER_TEMP": str(self.output_file.parent),
            **{input_var(n): "" for n in INPUTS},
        }
        # What action.yml's defaults evaluate to on the runner.
        self.inputs(**{
            "image": self.image, "package-path": "charts/demo", "package-kind": "helm",
            "registry-username": self.env["GITHUB_ACTOR"], "registry-password": TOKEN,
            "github-token": TOKEN, "on-conflict": "fail", "check-name": "release-capsule",
            "status-context": "release-capsule", "report": "both",
        })
        self.env.update(env)

    def inputs(self, **values: str) -> None:
        for k, v in values.items():
            self.env[input_var(k.replace("_", "-"))] = v

    @property
    def sha(self) -> str:
        return self.env["GITHUB_SHA"]

    def run(self) -> Result:
        proc = self.run_cli("action", env=self.env, cwd=self.workspace)
        return Result(proc, self)


def assert_no_secret(result: "Result", *secrets: str) -> None:
    _assert_no_secret(result.stdout, {"stderr": result.stderr, "GITHUB_OUTPUT": result.output_text,
                                      "GITHUB_STEP_SUMMARY": result.summary}, *secrets)


# -- tests ----------------------------------------------------------------------------

def test_push_publishes_and_reports_everything(step):
    image_digest = seed_image(step.registry, step.image.split("/", 1)[1], step.sha)
    r = step.run()
    assert r.returncode == 0, r
    client = step.registry.client()
    capsule_repo = step.capsule.split("/", 1)[1]
    pushed = client.manifest_digest(capsule_repo, f"git-{step.sha}")
    assert pushed is not None
    assert r.outputs == {
        "digest": pushed,
        "ref": f"{step.capsule}@{pushed}",
        "tag": f"git-{step.sha}",
        "image-digest": image_digest,
        "package-digest": r.outputs["package-digest"],
        "created": IMAGE_CREATED,
        "published": "true",
    }
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", r.outputs["package-digest"])

    run = one_check_run(step.github)
    assert run["head_sha"] == step.sha
    assert (run["status"], run["conclusion"], run["name"]) == ("completed", "success", "release-capsule")
    assert run["details_url"] == "https://github.com/Codertocat/Hello-World/actions/runs/1234567890"
    assert run["requests"][0]["status"] == "in_progress"
    assert pushed in run["output"]["title"] or pushed[:19] in run["output"]["title"]
    assert run["output"]["summary"] in r.summary, "the check run shows the job summary"
    statuses = step.github.statuses()
    assert [s["state"] for s in statuses] == ["pending", "success"]
    final = statuses[-1]
    assert final["sha"] == step.sha and final["context"] == "release-capsule"
    assert final["target_url"] == run["details_url"]
    assert final["description"] == f"{pushed[:19]}… git-{step.sha[:7]} published"
    assert_requests_valid(step.github)

    for needle in (f"{step.capsule}@{pushed}", f"{step.image}@{image_digest}", "helm chart `demo` `0.1.0`",
                   r.outputs["package-digest"], "capsule pushed",
                   f"imageFrom('{step.image}').Tag == imageFrom('{step.capsule}').Tag",
                   f"imageFrom('{step.capsule}').Digest"):
        assert needle in r.summary, needle
    assert re.search(r"\| Package \| .*, \d+ files, [0-9.]+ KiB, ", r.summary), r.summary
    assert "::group::" in r.stdout and "::endgroup::" in r.stdout
    assert not r.commands("debug"), "debug lines only with RUNNER_DEBUG=1"
    assert_no_secret(r, TOKEN)


def test_pull_request_validates_the_head_commit_and_pushes_nothing(step):
    step.event("pull_request")
    head = json.loads((step.events / "pull_request.json").read_text())["pull_request"]["head"]["sha"]
    assert step.sha == MERGE_SHA != head
    seed_image(step.registry, step.image.split("/", 1)[1], head)
    r = step.run()
    assert r.returncode == 0, r
    run = one_check_run(step.github)
    assert run["head_sha"] == head, "the PR head, not the merge commit"
    assert run["conclusion"] == "neutral"
    assert [s["sha"] for s in step.github.statuses()] == [head, head]
    assert r.outputs["published"] == "false"
    assert r.outputs["tag"] == f"git-{head}"
    assert step.registry.client().tags(step.capsule.split("/", 1)[1]) == [], "a dry run pushes nothing"
    assert "validated (dry run, nothing pushed)" in r.summary
    assert_requests_valid(step.github)


def test_pull_request_without_its_image_validates_the_package_and_is_neutral(step, workspace):
    """Many PR workflows build the image without pushing it: the package is
    still checked and annotated, the check is neutral, and the step passes."""
    step.event("pull_request")
    chart = workspace / "charts/demo/Chart.yaml"
    chart.write_text("\n".join(l for l in chart.read_text().splitlines() if not l.startswith("appVersion")) + "\n")
    r = step.run()
    assert r.returncode == 0, r
    run = one_check_run(step.github)
    assert run["conclusion"] == "neutral", run
    assert "without its image" in run["output"]["title"]
    assert [a["path"] for a in run["annotations"]] == ["charts/demo/Chart.yaml"]
    assert [a["annotation_level"] for a in run["annotations"]] == ["warning"]
    assert [s["state"] for s in step.github.statuses()] == ["pending", "success"]
    head = json.loads((step.events / "pull_request.json").read_text())["pull_request"]["head"]["sha"]
    assert r.outputs["published"] == "false" and r.outputs["tag"] == f"git-{head}"
    assert r.outputs["package-digest"].startswith("sha256:") and "digest" not in r.outputs
    assert "no capsule digest can be computed" in r.summary, r.summary
    assert step.registry.client().tags(step.capsule.split("/", 1)[1]) == []
    assert_requests_valid(step.github)
    # The same pull request with push on: the missing image is an error again.
    step.github.calls.clear()
    step.event("pull_request")
    step.inputs(push="true")
    r = step.run()
    assert r.returncode == 2, r
    assert "is not in the registry" in r.stdout


def test_fork_pull_request_with_a_read_only_token_still_succeeds(step):
    payload = json.loads((step.events / "pull_request.json").read_text())
    payload["pull_request"]["head"]["repo"]["full_name"] = "someone-else/Hello-World"
    step.event("pull_request", payload)
    seed_image(step.registry, step.image.split("/", 1)[1], payload["pull_request"]["head"]["sha"])
    step.github.mode = "forbidden"
    r = step.run()
    assert r.returncode == 0, r
    warnings = [w for w in r.commands("warning") if "Resource not accessible by integration" in w]
    assert warnings, r
    assert "Resource not accessible by integration" in r.summary
    assert step.github.check_runs() == [] and step.github.statuses() == []
    # One refused try per channel, then nothing more.
    assert [c.operation for c in step.github.writes()] == ["checks/create", "repos/create-commit-status"]
    assert r.outputs["published"] == "false"
    assert_requests_valid(step.github)
    assert_no_secret(r, TOKEN)


@pytest.mark.parametrize("kind", ["429", "secondary"])
def test_rate_limit_backs_off_without_a_duplicate_check_run(step, kind):
    seed_image(step.registry, step.image.split("/", 1)[1], step.sha)
    if kind == "429":
        step.github.rate_limit_first_n = 1
    else:
        step.github.secondary_rate_limit_first_n = 1
    r = step.run()
    assert r.returncode == 0, r
    creates = [c for c in step.github.calls if c.operation == "checks/create"]
    assert [c.status for c in creates] == [429 if kind == "429" else 403, 201]
    # Retry-After: 1 was honoured (a lower bound only; never an upper one).
    assert creates[1].time - creates[0].time >= 0.9
    run = one_check_run(step.github)
    assert run["conclusion"] == "success"
    assert "trying again in 1s" in r.stdout
    assert_requests_valid(step.github)


def test_undated_image_takes_the_commit_date_from_the_push_payload(step):
    seed_image(step.registry, step.image.split("/", 1)[1], step.sha, created=None)
    head_commit = json.loads(Path(step.env["GITHUB_EVENT_PATH"]).read_text())["head_commit"]
    assert head_commit["id"] == step.sha
    r = step.run()
    assert r.returncode == 0, r
    assert r.outputs["created"] == head_commit["timestamp"].replace("+00:00", "Z")
    # The payload had it: no request for the commit.
    assert [c.operation for c in step.github.calls] == [
        "checks/create", "repos/create-commit-status", "checks/update", "repos/create-commit-status"]
    assert_requests_valid(step.github)


def test_pull_request_target_also_uses_the_head_commit(step):
    step.event("pull_request_target")
    head = json.loads((step.events / "pull_request.json").read_text())["pull_request"]["head"]["sha"]
    seed_image(step.registry, step.image.split("/", 1)[1], head)
    r = step.run()
    assert r.returncode == 0, r
    assert one_check_run(step.github)["head_sha"] == head
    assert r.outputs["published"] == "false"


def test_workflow_dispatch_republishes_an_older_commit(step):
    step.event("workflow_dispatch")
    step.inputs(sha=OLD_SHA)
    seed_image(step.registry, step.image.split("/", 1)[1], OLD_SHA)
    r = step.run()
    assert r.returncode == 0, r
    assert r.outputs["tag"] == f"git-{OLD_SHA}" and r.outputs["published"] == "true"
    assert one_check_run(step.github)["head_sha"] == OLD_SHA
    tags = step.registry.client().tags(step.capsule.split("/", 1)[1])
    assert [t for t in tags if not t.endswith(".claim")] == [f"git-{OLD_SHA}"], "and the claim register beside it"
    assert_requests_valid(step.github)


def test_second_run_finds_the_release_already_published(step):
    seed_image(step.registry, step.image.split("/", 1)[1], step.sha)
    first = step.run()
    assert first.returncode == 0, first
    second = step.run()
    assert second.returncode == 0, second
    digest = first.outputs["digest"]
    assert parse_github_output(second.output_text)["digest"] == digest
    # Both runs appended to the same file, as steps of one job do.
    assert second.output_text.count("published=") == 2 and second.outputs["published"] == "false"
    runs = step.github.check_runs()
    assert len(runs) == 2 and all(r["conclusion"] == "success" for r in runs)
    assert step.github.statuses()[-1]["description"] == f"{digest[:19]}… git-{step.sha[:7]} already published"


def test_bad_input_exits_2_naming_the_input_and_reports_nothing(step):
    step.inputs(package_path="")
    r = step.run()
    assert r.returncode == 2, r
    [error] = r.commands("error")
    assert "input package-path: is required" in error
    assert step.github.calls == []
    assert "input package-path" in r.summary
    assert r.outputs == {}
    assert_no_secret(r, TOKEN)


def test_invalid_choice_and_sha_inputs(step):
    step.inputs(push="yes")
    r = step.run()
    assert r.returncode == 2 and 'input push: "yes" is not one of true, false' in r.stderr, r
    step.inputs(push="", sha="HEAD")
    r = step.run()
    assert r.returncode == 2 and 'input sha: invalid commit sha "HEAD"' in r.stderr, r


def test_package_error_fails_the_check_with_an_annotation(step, workspace):
    seed_image(step.registry, step.image.split("/", 1)[1], step.sha)
    chart_yaml = workspace / "charts/demo/Chart.yaml"
    lines = chart_yaml.read_text().splitlines()
    [n] = [i for i, line in enumerate(lines, 1) if line.startswith("version:")]
    lines[n - 1] = "version: not-a-version"
    chart_yaml.write_text("\n".join(lines) + "\n")
    r = step.run()
    assert r.returncode == 2, r
    errors = [e for e in r.commands("error") if e.startswith("::error file=charts/demo/Chart.yaml,")]
    assert errors, r
    assert f"line={n}," in errors[0]
    run = one_check_run(step.github)
    assert run["conclusion"] == "failure"
    [annotation] = run["annotations"]
    assert annotation["path"] == "charts/demo/Chart.yaml"
    assert (annotation["start_line"], annotation["annotation_level"]) == (n, "failure")
    assert step.github.statuses()[-1]["state"] == "failure"
    assert r.outputs == {"published": "false"}
    assert step.registry.client().tags(step.capsule.split("/", 1)[1]) == []
    assert_requests_valid(step.github)


def test_pull_request_chart_error_is_annotated_before_the_registry_is_asked(step, workspace):
    """A PR workflow that only annotates may never push its image: the chart
    problem must still become an annotation, not "image not in the registry"."""
    step.event("pull_request")
    (workspace / "charts/demo/Chart.yaml").write_text("apiVersion: v2\nname: demo\nversion: 1.0\n")
    r = step.run()
    assert r.returncode == 2, r
    assert any(e.startswith("::error file=charts/demo/Chart.yaml,line=3,") for e in r.commands("error")), r
    assert "not in the registry" not in r.stdout + r.stderr
    run = one_check_run(step.github)
    assert run["conclusion"] == "failure"
    assert [a["path"] for a in run["annotations"]] == ["charts/demo/Chart.yaml"]
    assert_requests_valid(step.github)


def test_package_warnings_become_annotations(step, workspace):
    seed_image(step.registry, step.image.split("/", 1)[1], step.sha)
    chart_yaml = workspace / "charts/demo/Chart.yaml"
    chart_yaml.write_text("".join(l for l in chart_yaml.read_text().splitlines(True) if not l.startswith("appVersion:")))
    r = step.run()
    assert r.returncode == 0, r
    assert any(w.startswith("::warning file=charts/demo/Chart.yaml,") and "appVersion" in w for w in r.commands("warning")), r
    run = one_check_run(step.github)
    assert run["conclusion"] == "success"
    assert [(a["path"], a["annotation_level"]) for a in run["annotations"]] == [("charts/demo/Chart.yaml", "warning")]
    assert "appVersion" in r.summary
    assert_requests_valid(step.github)


def test_report_none_and_debug(step):
    seed_image(step.registry, step.image.split("/", 1)[1], step.sha)
    step.inputs(report="none")
    step.env["RUNNER_DEBUG"] = "1"
    r = step.run()
    assert r.returncode == 0, r
    assert step.github.writes() == []
    assert r.commands("debug"), "RUNNER_DEBUG=1 shows debug lines"
    assert_no_secret(r, TOKEN)


def test_registry_password_is_masked_and_never_shown(workspace, shared_dir, fake_github, auth_registry, repo_name, run_cli):
    step = Step(workspace, shared_dir, fake_github, auth_registry, repo_name, run_cli)
    seed_image(auth_registry, repo_name, step.sha)
    step.inputs(registry_username=auth_registry.username, registry_password=auth_registry.password)
    step.env["RUNNER_DEBUG"] = "1"
    r = step.run()
    assert r.returncode == 0, r
    assert r.outputs["published"] == "true"
    assert_no_secret(r, TOKEN, auth_registry.password)
