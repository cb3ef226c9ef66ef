"""The action as the Actions runner starts it: the release binary alone in an
empty root file system, PID 1, Docker's capabilities, the runner's mounts
under /github, a workspace owned by another user, the environment the runner
builds from action.yml (harness/runner_sandbox.py says how each part is
reproduced), against the real registry and the schema-checking fake GitHub.
Outputs and the job summary are read back from /github/file_commands the way
the runner parses them. Then cancellation: SIGINT or SIGTERM, delivered to PID
1 as `docker run`'s signal proxy does, during an upload and during reporting.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from action_support import assert_requests_valid, one_check_run, parse_github_output, seed_image
from harness.runner_sandbox import RUNNER_UID, RunnerSandbox, bwrap_path
from runner_support import (
    OLD_SHA, RUNNER_ESCALATES_AFTER, TOKEN, Flow, assert_cancelled_on_github, assert_upload_cancelled_before_any_tag,
    is_static, pid1_in_its_namespace, pull_request_without_an_image, put_chart, start_a_slow_image_upload, unavailable,
    wait_for,
)


@pytest.fixture
def sandbox(tmp_path: Path, bin_path: Path, repo_root: Path) -> RunnerSandbox:
    if bwrap_path() is None:
        unavailable("bubblewrap (bwrap) is not installed; run scripts/bootstrap")
    if os.geteuid() != 0:
        unavailable("the runner sandbox needs root (Docker runs the container as root, without a user namespace)")
    if not is_static(bin_path):
        unavailable(f"{bin_path} is dynamically linked; the sandbox's root file system has no loader. "
                    "Build it as scripts/test does: a static build (-C target-feature=+crt-static)")
    return RunnerSandbox(tmp_path / "runner", bin_path, repo_root)


def test_push_publishes_from_inside_the_sandbox(sandbox, shared_dir, fake_github, registry, repo_name, helm_chart_factory):
    flow = Flow(sandbox, shared_dir, fake_github, "push")
    put_chart(helm_chart_factory, flow.workspace)
    image = f"{registry.host}/{repo_name}"
    image_digest = seed_image(registry, repo_name, flow.sha)
    r = flow.run(debug=True, image=image, **{"package-path": "charts/demo"})
    assert r.returncode == 0, r
    pushed = registry.client().manifest_digest(f"{repo_name}-release-capsule", f"git-{flow.sha}")
    assert r.outputs["digest"] == pushed and r.outputs["image-digest"] == image_digest, r.outputs
    assert r.outputs["published"] == "true"
    assert f"Release capsule `git-{flow.sha}` published" in r.summary
    run = one_check_run(fake_github)
    assert (run["status"], run["conclusion"]) == ("completed", "success")
    assert [s["state"] for s in fake_github.statuses()] == ["pending", "success"]
    assert_requests_valid(fake_github)
    # The container's view: translated paths, the default user and registry
    # credentials from action.yml's defaults (the actor, the job token).
    assert "/github/workspace/charts/demo" in r.stdout, r
    assert "GITHUB_TOKEN" not in flow.env(), "the runner sets no GITHUB_TOKEN unless the workflow does"
    r.assert_token_masked()
    # The tool wrote nothing into the workspace, which stays the runner user's.
    assert sorted(p.name for p in flow.workspace.iterdir()) == ["charts"]
    assert flow.workspace.stat().st_uid == RUNNER_UID


def test_pull_request_without_an_image_is_annotated_and_neutral(sandbox, shared_dir, fake_github, registry, repo_name,
                                                               helm_chart_factory):
    pull_request_without_an_image(sandbox, shared_dir, fake_github, registry, repo_name, helm_chart_factory)


def test_workflow_dispatch_republishes_the_sha_input(sandbox, shared_dir, fake_github, registry, repo_name, helm_chart_factory):
    flow = Flow(sandbox, shared_dir, fake_github, "workflow_dispatch")
    put_chart(helm_chart_factory, flow.workspace)
    seed_image(registry, repo_name, OLD_SHA)
    r = flow.run(image=f"{registry.host}/{repo_name}", sha=OLD_SHA, **{"package-path": "charts/demo"})
    assert r.returncode == 0, r
    assert r.outputs["tag"] == f"git-{OLD_SHA}" and r.outputs["published"] == "true"
    assert registry.client().manifest_digest(f"{repo_name}-release-capsule", f"git-{OLD_SHA}") == r.outputs["digest"]
    assert one_check_run(fake_github)["head_sha"] == OLD_SHA
    r.assert_token_masked()


def _signal_and_wait(proc, sig) -> tuple[str, str]:
    """Sends `sig` as the runner's cancellation does, and waits as long as the
    runner would before it escalates (then it would send SIGTERM, then SIGKILL:
    a tool still running then has failed the runner's contract)."""
    assert pid1_in_its_namespace(proc.pid1), "the action runs as PID 1, as in a container"
    os.kill(proc.pid1, sig)
    try:
        out, err = proc.communicate(timeout=RUNNER_ESCALATES_AFTER)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"still running when the runner would escalate, after {sig.name}\n{out}\n{err}") from None
    return out, err


def test_sigint_during_a_large_image_upload_stops_before_any_tag(sandbox, shared_dir, fake_github, registry, repo_name,
                                                              helm_chart_factory, fault_proxy):
    flow = Flow(sandbox, shared_dir, fake_github, "push")
    _, proc = start_a_slow_image_upload(sandbox, flow, registry, repo_name, helm_chart_factory, fault_proxy)
    out, err = _signal_and_wait(proc, signal.SIGINT)
    assert proc.returncode == 130, f"exit {proc.returncode}\n{out}\n{err}"
    assert_upload_cancelled_before_any_tag(registry, repo_name, fake_github, out + err, flow.step.read("step_summary"))


def test_sigterm_while_reporting_still_concludes_the_check_run(sandbox, shared_dir, fake_github, registry, repo_name,
                                                             helm_chart_factory):
    flow = Flow(sandbox, shared_dir, fake_github, "push")
    put_chart(helm_chart_factory, flow.workspace, app_version=False)  # a warning: an annotation update
    seed_image(registry, repo_name, flow.sha)
    # GitHub sits on the annotation update, as a slow API would.
    fake_github.hold = lambda call: 60 if call.method == "PATCH" and b'"annotations"' in call.raw_body else 0
    env = flow.env(image=f"{registry.host}/{repo_name}", **{"package-path": "charts/demo"})
    proc = sandbox.start(flow.step, env)
    wait_for("the annotation update to reach GitHub", lambda: any(c.held for c in fake_github.calls), proc)
    out, err = _signal_and_wait(proc, signal.SIGTERM)
    assert proc.returncode == 130, f"exit {proc.returncode}\n{out}\n{err}"
    fake_github.hold = None
    assert_cancelled_on_github(fake_github)
    # The capsule itself was complete before the signal; the outputs say so.
    outputs = parse_github_output(flow.step.read("set_output"))
    assert registry.client().manifest_digest(f"{repo_name}-release-capsule", f"git-{flow.sha}") == outputs["digest"]
    assert "while reporting" in flow.step.read("step_summary")


def test_the_sandbox_is_what_the_runner_builds(sandbox, shared_dir, fake_github, tmp_path):
    """The harness itself: inputs from action.yml (empty ones present), the
    runner's variables translated to container paths, the file commands."""
    flow = Flow(sandbox, shared_dir, fake_github, "push")
    env = flow.env(image="ghcr.io/acme/app", **{"package-path": "charts/demo"})
    assert env["INPUT_PACKAGE-PATH"] == "charts/demo"
    assert env["INPUT_SBOM"] == "" and "INPUT_SBOM" in env
    assert env["INPUT_REGISTRY-PASSWORD"] == TOKEN == env["INPUT_GITHUB-TOKEN"]
    assert env["INPUT_REGISTRY-USERNAME"] == flow.payload["sender"]["login"]
    assert env["GITHUB_WORKSPACE"] == "/github/workspace" and env["HOME"] == "/github/home"
    assert env["GITHUB_EVENT_PATH"] == "/github/workflow/event.json"
    assert env["GITHUB_OUTPUT"].startswith("/github/file_commands/set_output_")
    assert env["RUNNER_TEMP"] == "/github/runner_temp"
    assert env["CI"] == env["GITHUB_ACTIONS"] == "true"
    assert "GITHUB_TOKEN" not in env
    # RUNNER_WORKSPACE is the one host path the real runner passes untranslated
    # (no mount covers the directory above the workspace).
    leaked = {k for k, v in env.items() if v.startswith(str(tmp_path))}
    assert leaked == {"RUNNER_WORKSPACE"}, leaked
    with pytest.raises(ValueError):
        flow.env(**{"not-an-input": "x"})
    argv = sandbox.command(flow.step, env, 3)
    assert argv[-2:] == ["/release-capsule", "action"], "action.yml's args after the image's entrypoint"
    assert sorted(p.name for p in sandbox.rootfs.rglob("*") if p.is_file()) == [
        "ca-certificates.crt", "hostname", "hosts", "release-capsule", "resolv.conf"]
    assert shutil.which("bwrap")
