"""`verify`, `pull`, `export-freight` and `record-gate` as PID 1 (a container
step, a Kubernetes Job), where the kernel delivers no signal that has no
handler: a real SIGTERM mid-flight stops each one promptly with exit 130 and
leaves nothing half-written (no output directory, no staging directory, no
commit). The static binary runs alone in an empty root file system, as in
the runner sandbox (harness/runner_sandbox.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from test_gitops import GATE, NAME, OWNER, TOKEN, commit_count, gitops  # noqa: F401 (fixture)
from runner_support import pid1_in_its_namespace, wait_for
from test_runner_sandbox import sandbox  # noqa: F401 (fixture)
from verify_support import SHA, TAG

# What the cancellation watchdog (src/cancel.rs) says when it ends a run that
# did not stop on its own by its deadline. Judged by this rather than by the
# clock, which a loaded machine stretches.
WATCHDOG = "did not finish in time"


def start(sandbox, args, tmp_path, env=None):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    os.chmod(out, 0o777)
    full_env = {"HOME": "/tmp", "DOCKER_CONFIG": "/tmp", "PATH": "/", **(env or {})}
    return sandbox.start_cli([str(a) for a in args], full_env, {out: "/out"}), out


def sigterm(proc) -> tuple[float, str, str]:
    assert pid1_in_its_namespace(proc.pid1), "PID 1, as in a container"
    sent = time.monotonic()
    os.kill(proc.pid1, signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"still running 15 s after SIGTERM (the signal was ignored)\n{out}\n{err}")
    assert WATCHDOG not in err, f"it did not stop on its own; the watchdog ended it\n{err}"
    return time.monotonic() - sent, out, err


def stalled(fault_proxy, world):
    """The registry behind a proxy that holds every blob download for a minute."""
    proxy = fault_proxy(world.registry, delay=60, delay_when=lambda method, path: method == "GET" and "/blobs/" in path)
    return proxy, world.capsule.replace(world.registry.host, proxy.host, 1)


@pytest.mark.parametrize("command", ["verify", "pull"])
def test_sigterm_mid_download_exits_130_leaving_no_output(command, sandbox, world, fault_proxy, tmp_path):
    world.publish()
    proxy, capsule = stalled(fault_proxy, world)
    args = [command, "--capsule", f"{capsule}:{TAG}", "--output", "/out/capsule"]
    if command == "verify":
        args += ["--image", f"{world.image}:{TAG}"]
    proc, out = start(sandbox, args, tmp_path)
    wait_for("the layer download", lambda: proxy.entries("GET", "/blobs/"), proc)
    _, stdout, stderr = sigterm(proc)
    assert proc.returncode == 130, f"exit {proc.returncode}\n{stdout}\n{stderr}"
    verb = "verifying" if command == "verify" else "pulling"
    assert f"cancelled by SIGTERM while {verb} {capsule}:{TAG}" in stderr, stderr
    assert list(out.iterdir()) == [], "no output directory and no staging directory"


def test_export_freight_stopped_while_verifying_commits_nothing(sandbox, world, fault_proxy, gitops, fake_github, tmp_path):
    world.publish()
    proxy, capsule = stalled(fault_proxy, world)
    before = commit_count(gitops)
    proc, _ = start(sandbox, ["export-freight", "--capsule", f"{capsule}:{TAG}", "--freight-path", "warehouses/x/freight",
                              "--gitops-repository", f"{OWNER}/{NAME}"],
                    tmp_path, {"GITOPS_TOKEN": TOKEN, "GITHUB_API_URL": fake_github.url})
    wait_for("the layer download", lambda: proxy.entries("GET", "/blobs/"), proc)
    _, stdout, stderr = sigterm(proc)
    assert proc.returncode == 130, f"exit {proc.returncode}\n{stdout}\n{stderr}"
    assert "cancelled by SIGTERM while verifying" in stderr and "nothing was committed" in stderr, stderr
    assert commit_count(gitops) == before
    assert not [c for c in fake_github.calls if c.method != "GET"], "nothing was written to GitHub"


def record_gate_as_pid1(sandbox, fake_github, tmp_path):
    return start(sandbox, ["record-gate", "--sha", SHA, "--branch", "production", "--gate-path", GATE,
                           "--merged-at", "2026-11-20T10:30:00Z", "--gitops-repository", f"{OWNER}/{NAME}"],
                 tmp_path, {"GITOPS_TOKEN": TOKEN, "GITHUB_API_URL": fake_github.url})[0]


def test_record_gate_stopped_before_the_branch_moves_commits_nothing(sandbox, gitops, fake_github, tmp_path):
    fake_github.hold = lambda call: 60 if call.method == "POST" and call.path.endswith("/git/trees") else 0
    before = commit_count(gitops)
    proc = record_gate_as_pid1(sandbox, fake_github, tmp_path)
    wait_for("the tree request to reach GitHub", lambda: any(c.held for c in fake_github.calls), proc)
    _, stdout, stderr = sigterm(proc)
    assert proc.returncode == 130, f"exit {proc.returncode}\n{stdout}\n{stderr}"
    assert f"{OWNER}/{NAME}: cancelled by SIGTERM before moving main; nothing was committed" in stderr, stderr
    assert commit_count(gitops) == before
    assert not [c for c in fake_github.calls if c.operation == "git/update-ref"], "the branch was never asked to move"


@pytest.mark.parametrize("answer_after", [1.0, 4.0])
def test_record_gate_with_the_branch_update_in_flight_reports_what_happened(answer_after, sandbox, gitops, fake_github,
                                                                             tmp_path):
    """An update already sent cannot be called back: its answer is awaited for
    up to 2.5 s, and the exit says what happened (0: recorded), or, when it
    does not come in time, that the update may have been applied."""
    fake_github.hold = lambda call: answer_after if call.method == "PATCH" and "/git/refs/" in call.path else 0
    before = commit_count(gitops)
    proc = record_gate_as_pid1(sandbox, fake_github, tmp_path)
    wait_for("the branch update to reach GitHub", lambda: any(c.held for c in fake_github.calls), proc)
    elapsed, stdout, stderr = sigterm(proc)
    if answer_after < 2.5:
        assert proc.returncode == 0, f"exit {proc.returncode}\n{stdout}\n{stderr}"
        assert "committed" in stdout and commit_count(gitops) == before + 1, "recorded, and it says so"
    else:
        assert proc.returncode == 130, f"exit {proc.returncode}\n{stdout}\n{stderr}"
        assert "the update was sent and may have been applied" in stderr, stderr
        time.sleep(answer_after - elapsed + 1)
        assert commit_count(gitops) == before + 1, "it was, once GitHub got to it"
