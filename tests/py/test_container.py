"""The action image as users get it, run as the Actions runner runs it.

The image is built from the Dockerfile's final stage by scripts/image (buildah,
once per session, the `action_image` fixture: the static test binary laid out
by scripts/rootfs, the script the Dockerfile's build stage runs), then started
with `podman run` and exactly the arguments actions/runner gives `docker run`
(harness/container.py quotes the runner's source): the runner's mounts, `-e
NAME` for the environment it builds (runner_step.py, shared with the bubblewrap
sandbox of test_runner_sandbox.py), `--rm`, `--workdir /github/workspace`,
action.yml's args after the image's entrypoint, and SIGINT then SIGTERM to the
`podman run` process to cancel, which podman's signal proxy delivers to PID 1.
Against the real registry and the schema-checking fake GitHub, as the sandbox
tests are. Then `serve` from the same image. The image itself is test_image.py's.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from action_support import assert_requests_valid, one_check_run, seed_image
from harness.container import DEFAULT_SIGNALS, Podman, RunnerContainer, sigint_ignored
from harness.runner_step import DOCKER_SOCKET, RUNNER_UID
from runner_support import (
    RUNNER_ESCALATES_AFTER, TOKEN, Flow, assert_upload_cancelled_before_any_tag, pid1_in_its_namespace,
    pull_request_without_an_image, put_chart, start_a_slow_image_upload,
)
from serve_support import Server
from verify_support import SHA, TAG

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # the image's SSL_CERT_FILE


@pytest.fixture
def runner(repo_root: Path, podman: Podman, action_image: str) -> Iterator[RunnerContainer]:
    # Not under tmp_path: pytest keeps its directories to root alone (0700), and
    # the runner's user must reach its _work directory, as it does on a runner.
    home = Path(tempfile.mkdtemp(prefix="release-capsule-runner-"))
    home.chmod(0o711)
    r = RunnerContainer(home, repo_root, podman, action_image)
    yield r
    r.close()
    shutil.rmtree(home)


def read_as_runner(path: Path) -> str:
    """The file as the runner's own (non-root) user reads it in a later step."""
    proc = subprocess.run(["cat", str(path)], user=RUNNER_UID, group=RUNNER_UID, extra_groups=[],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"uid {RUNNER_UID} cannot read {path}: {proc.stderr}"
    return proc.stdout


def assert_all_runners(*tops: Path) -> None:
    """Nothing under ``tops`` was left to root (or anyone but the runner's user)."""
    for top in tops:
        for path in [top, *top.rglob("*")]:
            assert path.lstat().st_uid == RUNNER_UID, f"{path} is owned by uid {path.lstat().st_uid}"


# -- the action, as the runner runs it ---------------------------------------------------

def test_the_docker_run_line_is_the_runners(runner, shared_dir, fake_github):
    flow = Flow(runner, shared_dir, fake_github, "push")
    env = flow.env(image="ghcr.io/acme/app", **{"package-path": "charts/demo"})
    args = runner.docker_run_args(flow.step, env, "name_abc123")
    assert args[:7] == ["--name", "name_abc123", "--label", RunnerContainer.LABEL, "--workdir", "/github/workspace", "--rm"]
    names = args[7:7 + 2 * len(env)]
    assert names[0::2] == ["-e"] * len(env) and names[1::2] == list(env), "every variable by name, never its value"
    rest = args[7 + 2 * len(env):]
    assert rest[:6] == ["-e", "GITHUB_ACTIONS=true", "-e", "CI=true", "--network", "host"]
    mounts = [rest[i + 1].split(":")[1] for i in range(6, len(rest) - 2, 2)]
    assert mounts == [DOCKER_SOCKET, "/github/runner_temp", "/github/home", "/github/workflow",
                      "/github/file_commands", "/github/workspace"]
    assert rest[-2:] == [runner.image, "action"], "action.yml's args after the image's entrypoint"
    assert TOKEN not in " ".join(args) and TOKEN == env["INPUT_GITHUB-TOKEN"]
    assert "CI" not in env and "GITHUB_ACTIONS" not in env and "GITHUB_TOKEN" not in env


def test_push_publishes_from_the_image(runner, shared_dir, fake_github, registry, repo_name, helm_chart_factory):
    flow = Flow(runner, shared_dir, fake_github, "push")
    put_chart(helm_chart_factory, flow.workspace)
    image_digest = seed_image(registry, repo_name, flow.sha)
    r = flow.run(debug=True, image=f"{registry.host}/{repo_name}", **{"package-path": "charts/demo"})
    assert r.returncode == 0, r
    pushed = registry.client().manifest_digest(f"{repo_name}-release-capsule", f"git-{flow.sha}")
    assert r.outputs["digest"] == pushed and r.outputs["image-digest"] == image_digest, r.outputs
    assert r.outputs["published"] == "true" and r.outputs["tag"] == f"git-{flow.sha}"
    assert f"Release capsule `git-{flow.sha}` published" in r.summary
    run = one_check_run(fake_github)
    assert (run["status"], run["conclusion"]) == ("completed", "success"), run
    assert [s["state"] for s in fake_github.statuses()] == ["pending", "success"]
    assert_requests_valid(fake_github)
    assert "/github/workspace/charts/demo" in r.stdout, r
    r.assert_token_masked()
    # The next step, as the runner's user, reads what this one wrote through
    # /github/file_commands; nothing in the runner's directories became root's.
    assert read_as_runner(flow.step.files["set_output"]) == r.output_text
    assert read_as_runner(flow.step.files["step_summary"]) == r.summary
    assert_all_runners(flow.step.temp, flow.workspace.parent)
    assert sorted(p.name for p in flow.workspace.iterdir()) == ["charts"]
    assert runner.podman.run("container", "exists", runner.names[-1]).returncode == 1, "--rm removed the container"


def test_pull_request_without_an_image_is_neutral_from_the_image(runner, shared_dir, fake_github, registry, repo_name,
                                                                helm_chart_factory):
    pull_request_without_an_image(runner, shared_dir, fake_github, registry, repo_name, helm_chart_factory)


def test_workflow_dispatch_republish_is_a_no_op_from_the_image(runner, shared_dir, fake_github, registry, repo_name,
                                                              helm_chart_factory):
    pushed = Flow(runner, shared_dir, fake_github, "push")
    put_chart(helm_chart_factory, pushed.workspace)
    seed_image(registry, repo_name, pushed.sha)
    inputs = {"image": f"{registry.host}/{repo_name}", "package-path": "charts/demo"}
    first = pushed.run(**inputs)
    assert first.returncode == 0 and first.outputs["published"] == "true", first
    # Someone runs the release workflow by hand for that commit: a new run, a new
    # checkout of the same tree.
    again = Flow(runner, shared_dir, fake_github, "workflow_dispatch")
    shutil.copytree(pushed.workspace / "charts", again.workspace / "charts")
    r = again.run(sha=pushed.sha, **inputs)
    assert r.returncode == 0, r
    assert r.outputs["published"] == "false" and r.outputs["digest"] == first.outputs["digest"], r.outputs
    # The tag, and the claim register of the run that made it (src/commands/publish/claim.rs).
    claim = f"sha256-{first.outputs['digest'].removeprefix('sha256:')}.claim"
    assert sorted(registry.client().tags(f"{repo_name}-release-capsule")) == sorted([f"git-{pushed.sha}", claim])
    runs = fake_github.check_runs()
    assert [(run["head_sha"], run["conclusion"]) for run in runs] == [(pushed.sha, "success")] * 2, runs
    assert fake_github.statuses()[-1]["description"].endswith(f"git-{pushed.sha[:7]} already published")
    assert_requests_valid(fake_github)
    r.assert_token_masked()


def cancel_like_the_runner(proc: subprocess.Popen) -> tuple[float, list[str]]:
    """ProcessInvoker's cancellation of `docker run`: SIGINT; SIGTERM when still
    running 7.5 s later; SIGKILL 2.5 s after that. (seconds from the first signal
    to the exit, signals sent)"""
    sent = []
    first = time.monotonic()
    for sig, wait in ((signal.SIGINT, RUNNER_ESCALATES_AFTER), (signal.SIGTERM, 2.5), (signal.SIGKILL, 30)):
        proc.send_signal(sig)
        sent.append(sig.name)
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    return time.monotonic() - first, sent


def test_cancelled_like_the_runner_stops_before_any_tag(runner, shared_dir, fake_github, registry, repo_name,
                                                       helm_chart_factory, fault_proxy):
    flow = Flow(runner, shared_dir, fake_github, "push")
    env, proc = start_a_slow_image_upload(runner, flow, registry, repo_name, helm_chart_factory, fault_proxy)
    assert not sigint_ignored(proc.pid), "podman must start with SIGINT at its default, or it never forwards it"
    pid1 = runner.podman.pid1(proc.container, proc)
    assert pid1_in_its_namespace(pid1), "the action runs as PID 1 of the container"
    # The environment the runner meant, hyphenated input names included, plus
    # what docker run and the image add.
    environ = dict(item.split("=", 1) for item in Path(f"/proc/{pid1}/environ").read_text().split("\0") if item)
    added = {k: environ.pop(k) for k in ("GITHUB_ACTIONS", "CI", "PATH", "HOSTNAME", "SSL_CERT_FILE", "container", "TERM")}
    assert environ == env
    assert added["GITHUB_ACTIONS"] == added["CI"] == "true" and added["SSL_CERT_FILE"] == CA_BUNDLE, added

    elapsed, sent = cancel_like_the_runner(proc)
    out, err = proc.communicate()
    assert proc.returncode == 130, f"exit {proc.returncode}\n{out}\n{err}"
    # Only SIGINT was sent: the tool ended before the runner, emulated by
    # cancel_like_the_runner, would have escalated to SIGTERM.
    assert sent == ["SIGINT"], f"{sent}: exited {elapsed:.1f}s after the first signal"
    summary = read_as_runner(flow.step.files["step_summary"])
    assert_upload_cancelled_before_any_tag(registry, repo_name, fake_github, out + err, summary)
    assert runner.podman.run("container", "exists", proc.container).returncode == 1, "--rm removed the container"


# -- serve, from the same image ------------------------------------------------------------

@pytest.fixture
def serve_image(podman: Podman, action_image: str) -> Iterator:
    """``serve_image(*args) -> Server``: `podman run --rm --network host <image> serve
    --listen 127.0.0.1:<port> *args`, as a Deployment would run it; ``.container``
    is the container's name."""
    started: list[Server] = []

    def start(*args: str) -> Server:
        name = f"release-capsule-serve-{uuid.uuid4().hex[:8]}"
        command = [*DEFAULT_SIGNALS, *podman.argv("run", "--rm", "--name", name, "--network", "host", action_image)]
        server = Server(None, *args, env=podman.env, command=command)
        server.container = name
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        podman.run("rm", "--force", "--ignore", "--time", "0", server.container)


def verify_body(world, image_digest: str | None = None) -> bytes:
    """Spec section 10's request: the image by tag and digest, the capsule by tag."""
    return json.dumps({
        "image": {"repoURL": world.image, "tag": TAG, "digest": image_digest or world.image_digest},
        "capsule": {"repoURL": world.capsule, "tag": TAG},
    }).encode()


def sigterm_like_kubernetes(podman: Podman, server: Server) -> float:
    """The kubelet's stop: SIGTERM to the container's PID 1 through the runtime."""
    killed = podman.run("kill", "--signal", "TERM", server.container)
    assert killed.returncode == 0, killed.stderr
    return time.monotonic()


def test_serve_from_the_image_verifies_and_stops_on_sigterm(world, serve_image, podman):
    world.publish()
    s = serve_image("--allow", world.image, "--allow", world.capsule)
    assert s.get("/healthz")[0] == 200 and s.get("/readyz")[0] == 200
    status, answer = s.verify(verify_body(world))
    assert status == 200 and answer["ok"] is True, answer
    assert answer["release"]["gitCommit"] == SHA, answer
    status, answer = s.verify(verify_body(world, image_digest="sha256:" + "0" * 64))
    assert status == 422 and answer["ok"] is False and answer["failures"], answer
    sigterm_like_kubernetes(podman, s)
    assert s.proc.wait(timeout=30) == 0, s.stderr
    events = [line.get("event") for line in s.logs()]
    assert "draining" in events and events[-1] == "stopped", events


def test_serve_from_the_image_drains_as_spec_section_10_says(world, serve_image, podman):
    world.publish()
    s = serve_image("--allow", world.image, "--allow", world.capsule)
    assert s.verify(verify_body(world))[0] == 200
    signalled = sigterm_like_kubernetes(podman, s)
    # Readiness drops at once (as soon as the signal is handled, before the
    # service logs that it is draining), so that Kubernetes takes the pod out of
    # its Service while it still answers. Judged by that order, not by a clock:
    # a busy machine may take any time to deliver the signal.
    while not any(line.get("event") == "draining" for line in s.logs()):
        assert s.proc.poll() is None, f"serve exited before it logged the drain: {s.stderr}"
        time.sleep(0.02)
    assert s.get("/readyz")[0] == 503, "/readyz still 200 once the service logged that it is draining"
    time.sleep(max(0.0, signalled + 1.0 - time.monotonic()))
    status, answer = s.verify(verify_body(world))
    assert status == 200 and answer["ok"] is True, "a second into the drain, /verify still answers"
    assert s.proc.wait(timeout=30) == 0, s.stderr
