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

import json
import os
import shutil
import signal
import struct
import time
from pathlib import Path

import pytest

from action_support import (
    assert_no_secret, assert_requests_valid, one_check_run, parse_github_output, seed_image,
)
from harness.runner_sandbox import RUNNER_UID, RunnerSandbox, bwrap_path
from image_layouts import single_arch

TOKEN = "ghs_SandboxT0kenValue0000111122223333"
OLD_SHA = "0123456789abcdef0123456789abcdef01234567"
# The runner escalates SIGINT to SIGTERM after 7.5 s (and kills at 10 s): a step
# that is still running then has not stopped on its own.
RUNNER_ESCALATES_AFTER = 7.5


def _is_static(path: Path) -> bool:
    """An ELF file without a PT_INTERP segment needs no loader."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return False
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return all(struct.unpack_from("<I", data, phoff + i * phentsize)[0] != 3 for i in range(phnum))


@pytest.fixture
def sandbox(tmp_path: Path, bin_path: Path, repo_root: Path) -> RunnerSandbox:
    required = os.environ.get("RELEASE_CAPSULE_REQUIRE_SANDBOX") == "1"
    problem = None
    if bwrap_path() is None:
        problem = "bubblewrap (bwrap) is not installed; run scripts/bootstrap"
    elif os.geteuid() != 0:
        problem = "the runner sandbox needs root (Docker runs the container as root, without a user namespace)"
    elif not _is_static(bin_path):
        problem = (f"{bin_path} is dynamically linked; the sandbox's root file system has no loader. "
                   "Build it as scripts/test does: a static build (-C target-feature=+crt-static)")
    if problem:
        if required:
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)
    return RunnerSandbox(tmp_path / "runner", bin_path, repo_root)


def github_context(payload: dict, event: str, sha: str, api_url: str) -> dict[str, str]:
    repo = payload["repository"]
    return {
        "actor": payload["sender"]["login"],
        "actor_id": str(payload["sender"]["id"]),
        "triggering_actor": payload["sender"]["login"],
        "token": TOKEN,
        "repository": repo["full_name"],
        "repository_id": str(repo["id"]),
        "repository_owner": repo["owner"]["login"],
        "repository_owner_id": str(repo["owner"]["id"]),
        "sha": sha,
        "ref": payload.get("ref", "refs/pull/2/merge") if event != "workflow_dispatch" else "refs/heads/main",
        "ref_name": "main",
        "ref_type": "branch",
        "ref_protected": "false",
        "base_ref": "", "head_ref": "",
        "api_url": api_url,
        "server_url": "https://github.com",
        "run_id": "9876543210",
        "run_number": "42",
        "run_attempt": "1",
        "workflow": "release",
        "workflow_ref": f"{repo['full_name']}/.github/workflows/release.yml@refs/heads/main",
        "workflow_sha": sha,
        "job": "capsule",
    }


class Flow:
    """One action step in the sandbox: payload, workspace, inputs."""

    def __init__(self, sandbox: RunnerSandbox, shared_dir: Path, fake_github, event: str,
                 payload: dict | None = None, sha: str | None = None):
        self.sandbox = sandbox
        self.github = fake_github
        name = "pull_request" if event.startswith("pull_request") else event
        self.payload = payload or json.loads((shared_dir / "github-api" / "events" / f"{name}.json").read_text())
        self.event = event
        self.sha = sha or self.payload.get("after") or "9f2c1e0d8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d"
        self.step = sandbox.prepare(self.payload["repository"]["full_name"], event, self.payload)
        self.workspace = self.step.workspace

    def env(self, debug: bool = False, **inputs: str) -> dict[str, str]:
        github = github_context(self.payload, self.event, self.sha, self.github.url)
        return self.sandbox.environment(self.step, github=github, inputs=inputs, debug=debug)

    def run(self, debug: bool = False, **inputs: str):
        proc = self.sandbox.run(self.step, self.env(debug, **inputs))
        return Ran(proc, self)


class Ran:
    def __init__(self, proc, flow: Flow):
        self.returncode, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr
        self.output_text = flow.step.read("set_output")
        self.outputs = parse_github_output(self.output_text)
        self.summary = flow.step.read("step_summary")
        self.flow = flow

    def __repr__(self):
        return f"<exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}>"

    def assert_token_masked(self):
        assert_no_secret(self.stdout, {"stderr": self.stderr, "GITHUB_OUTPUT": self.output_text,
                                       "GITHUB_STEP_SUMMARY": self.summary}, TOKEN)
        for call in self.flow.github.calls:
            assert call.authorization == f"token {TOKEN}" or call.authorization == f"Bearer {TOKEN}", call


def put_chart(helm_chart_factory, workspace: Path, *, app_version: bool = True) -> None:
    helm_chart_factory("demo", parent=workspace / "charts")
    if not app_version:
        chart = workspace / "charts/demo/Chart.yaml"
        chart.write_text("\n".join(l for l in chart.read_text().splitlines() if not l.startswith("appVersion")) + "\n")


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
    flow = Flow(sandbox, shared_dir, fake_github, "pull_request")
    head = flow.payload["pull_request"]["head"]["sha"]
    put_chart(helm_chart_factory, flow.workspace, app_version=False)
    r = flow.run(image=f"{registry.host}/{repo_name}", **{"package-path": "charts/demo"})
    assert r.returncode == 0, r
    assert r.outputs["tag"] == f"git-{head}" and r.outputs["published"] == "false", r.outputs
    assert any(line.startswith("::warning file=charts/demo/Chart.yaml") for line in r.stdout.splitlines()), r
    run = one_check_run(fake_github)
    assert run["head_sha"] == head and run["conclusion"] == "neutral", run
    assert [a["path"] for a in run["annotations"]] == ["charts/demo/Chart.yaml"]
    assert registry.client().tags(f"{repo_name}-release-capsule") == []
    assert_requests_valid(fake_github)
    r.assert_token_masked()


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


def _pid1_in_its_namespace(pid: int) -> bool:
    """/proc/<pid>/status NSpid lists the pid in each namespace, outermost first."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return line.split()[-1] == "1"
    return False


def _wait_for(what: str, condition, proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the step ended before {what}: exit {proc.returncode}\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _signal_and_wait(proc, sig) -> tuple[float, str, str]:
    assert _pid1_in_its_namespace(proc.pid1), "the action runs as PID 1, as in a container"
    sent = time.monotonic()
    os.kill(proc.pid1, sig)
    out, err = proc.communicate(timeout=15)
    return time.monotonic() - sent, out, err


def _assert_cancelled_on_github(fake_github):
    run = one_check_run(fake_github)
    assert (run["status"], run["conclusion"]) == ("completed", "cancelled"), run
    statuses = fake_github.statuses()
    assert statuses[-1]["state"] == "error", statuses
    assert "cancelled" in statuses[-1]["description"], statuses
    assert_requests_valid(fake_github)


def test_sigint_during_a_large_image_upload_stops_before_any_tag(sandbox, shared_dir, fake_github, registry, repo_name,
                                                              helm_chart_factory, fault_proxy):
    flow = Flow(sandbox, shared_dir, fake_github, "push")
    put_chart(helm_chart_factory, flow.workspace)
    single_arch(flow.workspace / "image", tag=f"git-{flow.sha}", layer_sizes=[48 * 1024 * 1024], seed=9)
    # A slow link: each upload chunk waits half a second on its way to the registry.
    slow = fault_proxy(registry, delay=0.5, delay_when=lambda method, path: method in ("PATCH", "PUT") and "/blobs/" in path)
    env = flow.env(image=f"{slow.host}/{repo_name}", **{"package-path": "charts/demo", "image-layout": "image"})
    proc = sandbox.start(flow.step, env)
    _wait_for("the first upload chunk", lambda: slow.entries("PATCH", "/blobs/uploads/"), proc)
    elapsed, out, err = _signal_and_wait(proc, signal.SIGINT)
    assert proc.returncode == 130, f"exit {proc.returncode}\n{out}\n{err}"
    assert elapsed < RUNNER_ESCALATES_AFTER, f"still running {elapsed:.1f}s after SIGINT"
    assert "cancelled by SIGINT while uploading the image's blobs" in out + err
    client = registry.client()
    assert client.tags(repo_name) == [], "no image tag naming blobs that may be missing"
    assert client.tags(f"{repo_name}-release-capsule") == []
    _assert_cancelled_on_github(fake_github)
    assert "cancelled" in flow.step.read("step_summary")


def test_sigterm_while_reporting_still_concludes_the_check_run(sandbox, shared_dir, fake_github, registry, repo_name,
                                                             helm_chart_factory):
    flow = Flow(sandbox, shared_dir, fake_github, "push")
    put_chart(helm_chart_factory, flow.workspace, app_version=False)  # a warning: an annotation update
    seed_image(registry, repo_name, flow.sha)
    # GitHub sits on the annotation update, as a slow API would.
    fake_github.hold = lambda call: 60 if call.method == "PATCH" and b'"annotations"' in call.raw_body else 0
    env = flow.env(image=f"{registry.host}/{repo_name}", **{"package-path": "charts/demo"})
    proc = sandbox.start(flow.step, env)
    _wait_for("the annotation update to reach GitHub", lambda: any(c.held for c in fake_github.calls), proc)
    elapsed, out, err = _signal_and_wait(proc, signal.SIGTERM)
    assert proc.returncode == 130, f"exit {proc.returncode}\n{out}\n{err}"
    assert elapsed < RUNNER_ESCALATES_AFTER, f"still running {elapsed:.1f}s after SIGTERM"
    fake_github.hold = None
    _assert_cancelled_on_github(fake_github)
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
