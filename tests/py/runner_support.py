"""One action step played the way the runner plays it, for the tests that start
the action as a container: under bubblewrap (test_runner_sandbox.py) and as the
real image under podman (test_container.py). ``Flow`` takes either runner
(harness/runner_sandbox.py's RunnerSandbox, harness/container.py's
RunnerContainer): both lay out the step with runner_step.py and answer
``prepare``, ``environment``, ``start`` and ``run``."""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import pytest

from action_support import assert_no_secret, assert_requests_valid, one_check_run, parse_github_output
from image_layouts import single_arch

TOKEN = "ghs_SandboxT0kenValue0000111122223333"
OLD_SHA = "0123456789abcdef0123456789abcdef01234567"
# The runner escalates SIGINT to SIGTERM after 7.5 s (and kills at 10 s): a step
# that is still running then has not stopped on its own.
RUNNER_ESCALATES_AFTER = 7.5


def unavailable(problem: str):
    """Skips the test for want of ``problem``; fails it instead under
    RELEASE_CAPSULE_REQUIRE_SANDBOX=1 (scripts/test), which installs
    everything the runner's containers need."""
    if os.environ.get("RELEASE_CAPSULE_REQUIRE_SANDBOX") == "1":
        pytest.fail(problem, pytrace=False)
    pytest.skip(problem)


def is_static(path: Path) -> bool:
    """An ELF file without a PT_INTERP segment needs no loader."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return False
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return all(struct.unpack_from("<I", data, phoff + i * phentsize)[0] != 3 for i in range(phnum))


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
    """One action step in a runner: payload, workspace, inputs."""

    def __init__(self, runner, shared_dir: Path, fake_github, event: str,
                 payload: dict | None = None, sha: str | None = None):
        self.runner = runner
        self.github = fake_github
        name = "pull_request" if event.startswith("pull_request") else event
        self.payload = payload or json.loads((shared_dir / "github-api" / "events" / f"{name}.json").read_text())
        self.event = event
        self.sha = sha or self.payload.get("after") or "9f2c1e0d8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d"
        self.step = runner.prepare(self.payload["repository"]["full_name"], event, self.payload)
        self.workspace = self.step.workspace

    def env(self, debug: bool = False, **inputs: str) -> dict[str, str]:
        github = github_context(self.payload, self.event, self.sha, self.github.url)
        return self.runner.environment(self.step, github=github, inputs=inputs, debug=debug)

    def run(self, debug: bool = False, **inputs: str):
        proc = self.runner.run(self.step, self.env(debug, **inputs))
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


def pid1_in_its_namespace(pid: int) -> bool:
    """/proc/<pid>/status NSpid lists the pid in each namespace, outermost first."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return line.split()[-1] == "1"
    return False


def wait_for(what: str, condition, proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the step ended before {what}: exit {proc.returncode}\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def assert_cancelled_on_github(fake_github):
    run = one_check_run(fake_github)
    assert (run["status"], run["conclusion"]) == ("completed", "cancelled"), run
    statuses = fake_github.statuses()
    assert statuses[-1]["state"] == "error", statuses
    assert "cancelled" in statuses[-1]["description"], statuses
    assert_requests_valid(fake_github)


def start_a_slow_image_upload(runner, flow: Flow, registry, repo_name: str, helm_chart_factory, fault_proxy):
    """Starts a push whose 48 MiB image layout crawls to the registry (each upload
    chunk waits half a second on its way); (env, proc) once the first chunk is out."""
    put_chart(helm_chart_factory, flow.workspace)
    single_arch(flow.workspace / "image", tag=f"git-{flow.sha}", layer_sizes=[48 * 1024 * 1024], seed=9)
    slow = fault_proxy(registry, delay=0.5, delay_when=lambda method, path: method in ("PATCH", "PUT") and "/blobs/" in path)
    env = flow.env(image=f"{slow.host}/{repo_name}", **{"package-path": "charts/demo", "image-layout": "image"})
    proc = runner.start(flow.step, env)
    wait_for("the first upload chunk", lambda: slow.entries("PATCH", "/blobs/uploads/"), proc)
    return env, proc


def assert_upload_cancelled_before_any_tag(registry, repo_name: str, fake_github, output: str, summary: str):
    assert "cancelled by SIGINT while uploading the image's blobs" in output
    client = registry.client()
    assert client.tags(repo_name) == [], "no image tag naming blobs that may be missing"
    assert client.tags(f"{repo_name}-release-capsule") == []
    assert_cancelled_on_github(fake_github)
    assert "cancelled" in summary


def pull_request_without_an_image(runner, shared_dir: Path, fake_github, registry, repo_name: str,
                                  helm_chart_factory) -> Ran:
    """A pull request whose image was never pushed, with a chart that earns a
    warning: validated and annotated, neutral, nothing pushed, exit 0."""
    flow = Flow(runner, shared_dir, fake_github, "pull_request")
    head = flow.payload["pull_request"]["head"]["sha"]
    put_chart(helm_chart_factory, flow.workspace, app_version=False)
    r = flow.run(image=f"{registry.host}/{repo_name}", **{"package-path": "charts/demo"})
    assert r.returncode == 0, r
    assert r.outputs["tag"] == f"git-{head}" and r.outputs["published"] == "false", r.outputs
    assert any(line.startswith("::warning file=charts/demo/Chart.yaml") for line in r.stdout.splitlines()), r
    run = one_check_run(fake_github)
    assert run["head_sha"] == head and (run["status"], run["conclusion"]) == ("completed", "neutral"), run
    assert [a["path"] for a in run["annotations"]] == ["charts/demo/Chart.yaml"]
    assert registry.client().tags(f"{repo_name}-release-capsule") == []
    assert_requests_valid(fake_github)
    r.assert_token_masked()
    return r
