"""The pull-request preview (spec section 13), driven as the runner drives the
action on a pull_request event (../shared/github-api/events/pull_request.json,
its shas pointed at real commits): the base release published to the real
registry by the real binary, the git-backed fake GitHub (the app repository,
and the GitOps repository with values files and rendered stage branches, every
request and answer checked against operations*.json), and Helm's engine
behind tests/py/tools/helm."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from action_support import one_check_run
from preview_support import (
    CONFIG_PATH, ENVIRONMENTS, GITOPS, GITOPS_TOKEN, PreviewWorld, helm_env, secret_values, values_paths,
)
from test_action import TOKEN, step, workspace  # noqa: F401 (fixtures)


@pytest.fixture
def world(step, run_cli, tmp_path):  # noqa: F811
    return PreviewWorld(step, run_cli, tmp_path)


def check_output(github) -> tuple[str, str]:
    run = one_check_run(github)
    return run["output"]["summary"], run["output"].get("text") or ""


def table_row(summary: str, env: str) -> list[str]:
    line = next(l for l in summary.splitlines() if l.startswith(f"| `{env}` |"))
    return [c.strip() for c in line.strip("|").split("|")]


def diff_file(step, env: str) -> str:  # noqa: F811
    return (step.workspace / "release-capsule-preview" / f"{env}.diff").read_text()


def test_a_values_only_change_shows_in_one_environment_only(world):
    # The chart's default replica count: staging and test set their own.
    world.edit("values.yaml", "replicaCount: 1", "replicaCount: 5")
    world.pull_request()
    r = world.step.run()
    assert r.returncode == 0, r
    summary, text = check_output(world.step.github)
    assert summary.startswith("### Preview: what this pull request does to each environment\n\n| Environment |"), summary[:300]
    assert table_row(summary, "staging")[1] == "no changes"
    assert table_row(summary, "test")[1] == "no changes"
    assert table_row(summary, "production")[1] == "0 added, 1 changed, 0 removed"
    assert "-  replicas: 1\n+  replicas: 5" in summary + text
    assert "changed <code>Deployment.apps production-demo</code> (+1 −1)" in summary + text
    assert "staging-demo" not in (summary + text).split("#### `staging`")[1].split("#### `test`")[0].split("Against what runs now")[0]
    # Against what runs now: the released image alone, one line per environment.
    assert table_row(summary, "staging")[2] == "0 added, 1 changed (1 only the image), 0 removed"
    assert table_row(summary, "production")[2] == "not configured"
    old = f"{world.step.image}@{world.base_image_digest}"
    new = f"{world.step.image}@{world.head_image_digest}"
    line = f"- `staging`, against what runs now: image `{old}` → `{new}` in 1 object (nothing else changes there)"
    assert line in summary, summary
    assert f"base capsule `{world.step.capsule}@sha256:" in summary and "the pull request's merge base" in summary
    assert r.outputs["preview-changed"] == "true"
    assert r.outputs["preview-path"] == "release-capsule-preview"
    assert set(p.name for p in (world.step.workspace / "release-capsule-preview").iterdir()) == {f"{e}.diff" for e in ENVIRONMENTS}
    assert "+  replicas: 5" in diff_file(world.step, "production")
    assert "# no changes" in diff_file(world.step, "staging")
    # The job summary leads with the table too; the check run title says it.
    assert r.summary.startswith("### Preview: what this pull request does to each environment")
    run = one_check_run(world.step.github)
    assert run["conclusion"] == "neutral", "a pull request's dry run; the preview does not change that"
    assert run["output"]["title"].endswith("; preview: 3 of 3 environments change"), run["output"]["title"]
    reads = [c for c in world.step.github.calls if c.operation == "repos/get-content"]
    assert len(reads) == 2 * len(ENVIRONMENTS) and all(c.authorization == f"Bearer {GITOPS_TOKEN}" for c in reads)
    assert [c for c in world.step.github.calls if c.operation == "repos/compare-commits"]
    assert not [c for c in world.step.github.calls if c.method != "GET" and c.operation and c.operation.startswith("git/")]
    world.step.github.assert_clean()


def test_a_template_change_shows_in_every_environment(world):
    world.edit("templates/service.yaml", "  labels:\n", "  annotations:\n    preview.example/changed: \"yes\"\n  labels:\n")
    world.pull_request()
    r = world.step.run()
    assert r.returncode == 0, r
    summary, text = check_output(world.step.github)
    for env in ENVIRONMENTS:
        assert table_row(summary, env)[1] == "0 added, 1 changed, 0 removed", env
        assert f"changed <code>Service {env}-demo</code> (+2 −0)" in summary + text
        assert "+    preview.example/changed: yes" in diff_file(world.step, env)


def test_an_identical_render_is_no_change_and_a_capsule_is_found_along_first_parents(step, run_cli, tmp_path):  # noqa: F811
    world = PreviewWorld(step, run_cli, tmp_path, rendered=(), capsule_on_parent=True)
    world.pull_request({"README.md": b"only the readme\n"})
    r = step.run()
    assert r.returncode == 0, r
    summary, _ = check_output(step.github)
    for env in ENVIRONMENTS:
        assert table_row(summary, env)[1:] == ["no changes", "not configured"]
    assert f"`git-{world.released[:7]}`, 1 first-parent commits before the merge base `{world.base[:7]}`" in summary
    assert r.outputs["preview-changed"] == "false"
    assert one_check_run(step.github)["output"]["title"].endswith("; preview: no changes")
    gets = [c for c in step.github.calls if c.operation == "git/get-commit"]
    assert len(gets) == 1, "one first parent looked up"


def test_secret_values_never_appear_anywhere(world):
    world.edit("templates/secret.yaml", "{{ .Values.dbPassword | b64enc | quote }}",
               "{{ printf \"%s-rotated\" .Values.dbPassword | b64enc | quote }}")
    # The same values again, in a Secret inside a List and in one whose kind is spelled otherwise.
    (world.chart / "templates" / "listed.yaml").write_text(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: listed\n"
        "  stringData:\n    token: {{ .Values.apiToken | quote }}\n---\napiVersion: v1\nkind: secret\nmetadata:\n"
        "  name: spelled\ndata:\n  password: {{ .Values.dbPassword | b64enc | quote }}\n")
    world.pull_request()
    r = world.step.run()
    assert r.returncode == 0, r
    summary, text = check_output(world.step.github)
    assert table_row(summary, "staging")[1] == "2 added, 1 changed, 0 removed"
    assert "password: (changed, 27 bytes)" in summary + text, "staging-db-Pa55word-rotated: 27 bytes"
    assert "token: (22 bytes)" in summary + text and "password: (19 bytes)" in summary + text
    forms = []
    for v in secret_values() + [f"{p}-rotated" for p in secret_values() if "db" in p]:
        forms += [v, base64.b64encode(v.encode()).decode()]
    bodies = json.dumps([c.body for c in world.step.github.calls]) + json.dumps(world.step.github.check_runs())
    files = "".join(p.read_text() for p in (world.step.workspace / "release-capsule-preview").iterdir())
    everything = {"check run requests": bodies, "stdout": r.stdout, "stderr": r.stderr, "job summary": r.summary,
                  "outputs": r.output_text, "diff files": files}
    for where, out in everything.items():
        for secret in forms:
            assert secret not in out, f"{secret!r} in the {where}"


def test_a_chart_of_500_objects_stays_within_the_limits_and_says_what_it_left_out(step, run_cli, tmp_path):  # noqa: F811
    world = PreviewWorld(step, run_cli, tmp_path, environments=("staging",), rendered=(), publish_base=False)
    many = ("{{- range $i := until 500 }}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: many-{{ $i }}\n"
            "data:\n  index: \"{{ $i }}\"\n  text: \"{{ $.Values.manyText }}\"\n{{- end }}\n")
    for chart in (world.chart, world.base_chart):
        (chart / "templates" / "many.yaml").write_text(many)
        (chart / "values.yaml").write_text((chart / "values.yaml").read_text() + "manyText: released\n")
    world.publish(world.released)
    world.edit("values.yaml", "manyText: released", "manyText: " + "changed in this pull request " * 8)
    world.pull_request()
    r = step.run()
    assert r.returncode == 0, r
    summary, text = check_output(step.github)
    assert len(summary) <= 65535 and len(text) <= 65535
    assert table_row(summary, "staging")[1] == "0 added, 500 changed, 0 removed"
    shown = (summary + text).count("<details><summary>changed <code>ConfigMap many-")
    assert 100 < shown < 500
    assert f"> {500 - shown} objects not shown here (GitHub's limit is 65,535 characters per field): staging: changed ConfigMap many-" in text
    assert "and " in text.split("objects not shown here")[1] and "more. The complete diff is in `release-capsule-preview`" in text
    assert diff_file(step, "staging").count("# changed ConfigMap many-") == 500


def test_a_fork_pull_request_skips_the_preview_with_one_neutral_line(world):
    world.pull_request(fork=True)
    r = world.step.run()
    assert r.returncode == 0, r
    line = ("Preview skipped: this pull request comes from a fork, and GitHub gives a fork's workflow no secrets, so there is "
            f"no gitops-token to read the environments' values in {GITOPS} with. The rest of the check ran as usual.")
    run = one_check_run(world.step.github)
    assert f"> [!NOTE]\n> {line}" in run["output"]["summary"]
    assert run["conclusion"] == "neutral" and run["output"]["title"].endswith("; preview skipped")
    assert "Validated" in run["output"]["title"], "the rest of the check ran"
    assert line in r.summary and line in r.stdout
    assert "preview-changed" not in r.outputs
    assert not [c for c in world.step.github.calls if c.path.startswith(f"/repos/{GITOPS}/")]


def test_a_missing_values_file_is_an_error_naming_it(world):
    world.gitops.commit_files("main", {values_paths("test")[1]: None}, "Remove test's values")
    world.pull_request()
    r = world.step.run()
    assert r.returncode == 2, r
    message = (f"environment test: values file {values_paths('test')[1]} is not in {GITOPS} at main; "
               "check valuesFiles in the preview config")
    run = one_check_run(world.step.github)
    assert run["conclusion"] == "failure"
    assert message in run["output"]["summary"] and message in r.stdout
    assert run["output"]["title"].startswith("Preview failed: environment test: values file")


def test_a_helm_environment_without_a_namespace_is_an_error_not_a_guess(world):
    # Helm's `default` is not where Kargo renders: the Project's namespace is.
    import yaml
    config = yaml.safe_load((world.step.workspace / CONFIG_PATH).read_text())
    del config["environments"][1]["namespace"]
    (world.step.workspace / CONFIG_PATH).write_text(yaml.safe_dump(config, sort_keys=False))
    world.pull_request()
    r = world.step.run()
    assert r.returncode == 2, r
    run = one_check_run(world.step.github)
    assert run["conclusion"] == "failure"
    message = ("preview config: environments[1].namespace: is required for a Helm package (environment test): the stage's "
               "helm-template namespace, or, when the step sets none, the Kargo Project's namespace")
    assert message in run["output"]["summary"] and message in r.stdout


def test_a_base_capsule_that_fails_verification_is_an_error_and_nothing_is_compared(world):
    # The released image tag now names another image: the capsule no longer verifies.
    from action_support import seed_image
    seed_image(world.step.registry, world.image_repo, world.released, created="2027-01-01T00:00:00Z")
    world.pull_request()
    r = world.step.run()
    assert r.returncode == 1, r
    run = one_check_run(world.step.github)
    assert run["conclusion"] == "failure"
    assert f"base capsule {world.step.capsule}:git-{world.released}" in run["output"]["summary"]
    assert "verification failed" in run["output"]["summary"] and "image.digest" in run["output"]["summary"]
    assert not (world.step.workspace / "release-capsule-preview").exists(), "no comparison against unverified content"


def test_with_a_signing_key_the_base_capsule_must_be_signed_by_it(step, run_cli, tmp_path):  # noqa: F811
    # The key the workflow signs its releases with: a base capsule without
    # its signature is not what this workflow released, and is not compared against.
    from test_signing import PLAIN
    world = PreviewWorld(step, run_cli, tmp_path, environments=("staging",), rendered=())
    world.pull_request()
    step.inputs(signing_key=PLAIN.read_text())
    r = step.run()
    assert r.returncode == 1, r
    run = one_check_run(step.github)
    assert run["conclusion"] == "failure"
    assert f"base capsule {step.capsule}:git-{world.released}" in run["output"]["summary"]
    assert "signature" in run["output"]["summary"], run["output"]["summary"]
    assert not (step.workspace / "release-capsule-preview").exists()
    # Signed by that key, it is.
    signed = run_cli("publish", "--sha", world.released, "--image", step.image, "--source-repository",
                    "https://github.com/Codertocat/Hello-World", "--package-path", str(world.base_chart),
                    "--created", "2026-11-20T10:11:12Z", "--signing-key", str(PLAIN), "--json")
    assert signed.returncode == 0, signed.stderr
    r = step.run()
    assert r.returncode == 0, r
    assert "base capsule" in r.summary


def test_a_template_error_fails_the_check_at_helms_file_and_line(world):
    world.edit("templates/service.yaml", "spec:\n", "spec:\n  broken: {{ .Values.nope.deeper }}\n")
    line = next(i for i, l in enumerate((world.chart / "templates/service.yaml").read_text().splitlines(), 1) if "broken" in l)
    world.pull_request()
    r = world.step.run()
    assert r.returncode == 1, r
    run = one_check_run(world.step.github)
    assert run["conclusion"] == "failure"
    annotations = [a for a in run["annotations"] if a["annotation_level"] == "failure"]
    assert [(a["path"], a["start_line"]) for a in annotations] == [("charts/demo/templates/service.yaml", line)]
    assert "nil pointer evaluating interface {}.deeper" in annotations[0]["message"]
    assert f"::error file=charts/demo/templates/service.yaml,line={line}," in r.stdout


def test_helms_error_text_shows_no_secret_value(world):
    # A chart's own check that quotes the value it refuses, as Helm's `fail`
    # (or a values.schema.json pattern) does: Helm's text names the value.
    world.edit("templates/secret.yaml", "type: Opaque\n",
               "type: Opaque\n{{- if lt (len .Values.dbPassword) 40 }}{{ fail (printf \"dbPassword %q is too short\" "
               ".Values.dbPassword) }}{{ end }}\n")
    world.pull_request()
    r = world.step.run()
    assert r.returncode == 1, r
    run = one_check_run(world.step.github)
    annotations = [a for a in run["annotations"] if a["annotation_level"] == "failure"]
    assert annotations and annotations[0]["path"] == "charts/demo/templates/secret.yaml", annotations
    assert "dbPassword \"(hidden)\" is too short" in annotations[0]["message"], annotations[0]["message"]
    everything = json.dumps([c.body for c in world.step.github.calls]) + json.dumps(world.step.github.check_runs())
    everything += r.stdout + r.stderr + r.summary
    for secret in secret_values():
        assert secret not in everything, secret


def test_the_cli_runs_the_same_preview_locally(world, run_cli, tmp_path):
    world.edit("values.yaml", "replicaCount: 1", "replicaCount: 5")
    head = world.pull_request()
    out = tmp_path / "preview-out"
    proc = run_cli("preview", "--config", world.step.workspace / CONFIG_PATH, "--package-path", world.chart, "--sha", head,
                   "--image", world.step.image, "--image-digest", world.head_image_digest, "--repository", "Codertocat/Hello-World",
                   "--base", world.base, "--output", out, "--json",
                   env={"GITHUB_API_URL": world.step.github.url, "GITHUB_TOKEN": TOKEN, "GITOPS_TOKEN": GITOPS_TOKEN, **helm_env()})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["changed"] is True
    envs = {e["name"]: e for e in report["environments"]}
    assert envs["production"]["thisChange"] == {"added": 0, "changed": 1, "removed": 0, "imageOnly": 0}
    assert envs["staging"]["againstNow"] == {"added": 0, "changed": 1, "removed": 0, "imageOnly": 1}
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{e}.diff" for e in ENVIRONMENTS)
    assert report["image"] == f"{world.step.image}@{world.head_image_digest}"
    # Without --image-digest the digest is looked up, as the action does: the
    # pull request's image exists, so the renders name it by digest (spec section 13).
    argv = ["preview", "--config", world.step.workspace / CONFIG_PATH, "--package-path", world.chart, "--sha", head,
            "--image", world.step.image, "--repository", "Codertocat/Hello-World", "--base", world.base,
            "--output", tmp_path / "again", "--json"]
    env = {"GITHUB_API_URL": world.step.github.url, "GITHUB_TOKEN": TOKEN, "GITOPS_TOKEN": GITOPS_TOKEN, **helm_env()}
    proc = run_cli(*argv, env=env)
    assert proc.returncode == 0, proc.stderr
    looked_up = json.loads(proc.stdout)
    assert looked_up["image"] == report["image"]
    assert looked_up["environments"] == report["environments"]
    # A commit whose image is not pushed yet: its tag, as the stage would set it.
    unbuilt = world.app.commit_files("feature", {"CHANGELOG.md": b"more\n"}, "Another change")
    proc = run_cli(*[a if a != head else unbuilt for a in argv], env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["image"] == f"{world.step.image}:git-{unbuilt}"


def test_a_base_without_common_history_is_named_as_such_not_as_a_permission(world):
    # GitHub answers 404 to compare when the commits share no history; that is
    # not the token's fault, and the error must not send the user to `permissions:`.
    world.pull_request()
    event = Path(world.step.env["GITHUB_EVENT_PATH"])
    payload = json.loads(event.read_text())
    payload["pull_request"]["base"]["sha"] = "f" * 40  # a commit the repository does not hold
    event.write_text(json.dumps(payload))
    r = world.step.run()
    assert r.returncode != 0, r
    run = one_check_run(world.step.github)
    assert run["conclusion"] == "failure"
    assert "share no history, or one of them is not in this repository" in run["output"]["summary"], run["output"]
    assert "permissions:" not in run["output"]["summary"]
