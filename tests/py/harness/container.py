"""The action image, built from the Dockerfile by scripts/image, run the way
actions/runner runs a container action, with podman in place of docker and the
same arguments (test_container.py; test_image.py looks at the image itself).

The `docker run` line, from actions/runner's source (read at commit 258d6c8,
August 2026): ContainerActionHandler.RunAsync (src/Runner.Worker/Handlers/
ContainerActionHandler.cs) builds the ContainerInfo, DockerCommandManager.DockerRun
(src/Runner.Worker/Container/DockerCommandManager.cs) turns it into

    docker run --name <image, sanitized>_<6 hex> --label <runner instance label>
      --workdir /github/workspace --rm
      -e NAME ...                       every key of the container environment; the
                                        values reach docker through its own process
                                        environment, never the command line
      -e GITHUB_ACTIONS=true -e CI=true (CI only when the environment has none)
      [--entrypoint <runs.entrypoint>]  (action.yml has none)
      [--network <job network>]         here: --network host
      -v /var/run/docker.sock:/var/run/docker.sock
      -v <RUNNER_TEMP>:/github/runner_temp
      -v <RUNNER_TEMP>/_github_home:/github/home
      -v <RUNNER_TEMP>/_github_workflow:/github/workflow
      -v <RUNNER_TEMP>/_runner_file_commands:/github/file_commands
      -v <workspace>:/github/workspace
      <image> <runs.args>

and the ProcessInvoker (src/Runner.Sdk/ProcessInvoker.cs) starts it with SIGINT at
its default disposition (the worker handles SIGINT itself, and .NET resets handled
signals to their defaults in the child) and cancels it with SIGINT, then SIGTERM
7.5 s later, then kills it 2.5 s after that; `docker run` proxies those signals to
the container's PID 1.

Here: `podman --runtime runc --cgroup-manager=cgroupfs run` with the same
arguments (crun refuses these machines' hybrid cgroups), a containers.conf with
`default_ulimits = []` (the default RLIMIT_NOFILE cannot be raised here; Docker
sets none either) named by CONTAINERS_CONF, the network of the host (the
registry, the fake GitHub and the fault proxy listen on 127.0.0.1), and a bound
unix socket standing in for the Docker daemon's (there is none; the tool never
uses it). podman adds `container=podman` and `TERM=xterm` to the environment,
which Docker does not; nothing reads them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from . import REPO_ROOT
from .runner_step import RunnerStep, Step

# The three settings these machines need (see the module docstring).
PODMAN = ("podman", "--runtime", "runc", "--cgroup-manager=cgroupfs")
# What scripts/bootstrap writes, unless CONTAINERS_CONF names another file.
DEFAULT_CONTAINERS_CONF = REPO_ROOT / ".containers" / "containers.conf"
# Variables of ours that podman and buildah read; nothing else of the test
# process reaches them (or, through `-e NAME`, the container).
_PASSED_THROUGH = ("PATH", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF", "TMPDIR")
# Start podman with every signal at its default disposition, as .NET starts
# `docker run`. A process started in the background of a non-interactive shell
# inherits SIGINT ignored (and so would pytest, and its children): podman then
# never sees the runner's SIGINT, and never forwards it.
DEFAULT_SIGNALS = ("env", "--default-signal")


def containers_conf() -> Path:
    return Path(os.environ.get("CONTAINERS_CONF") or DEFAULT_CONTAINERS_CONF)


class Podman:
    """podman and buildah as these machines need them: ``argv(...)`` is a
    podman command line, ``env`` the environment to run it (and buildah) in."""

    def __init__(self):
        self.conf = containers_conf()
        self.env = {k: os.environ[k] for k in _PASSED_THROUGH if k in os.environ}
        self.env["CONTAINERS_CONF"] = str(self.conf)

    def problem(self) -> str | None:
        """Why podman cannot run the image here, or None."""
        missing = [tool for tool in ("podman", "buildah", "runc") if shutil.which(tool) is None]
        if missing:
            return f"{', '.join(missing)} not installed (apt-get install podman buildah runc; or run scripts/bootstrap)"
        if os.geteuid() != 0:
            return ("the container tests need root: the runner runs `docker run` against a root daemon, without a "
                    "user namespace, so the container's root can write the runner user's files")
        if not self.conf.is_file():
            return f"{self.conf} is missing (run scripts/bootstrap, or point CONTAINERS_CONF at a containers.conf)"
        info = self.run("info", "--format", "{{.Host.OCIRuntime.Name}}")
        if info.returncode != 0:
            return f"podman cannot run here: {' '.join(self.argv('info'))}: {info.stderr.strip()}"
        return None

    def cannot_run(self, binary: Path) -> str | None:
        """Why podman cannot start a container here, or None: the runtime, its
        cgroups and ulimits, tried on a root holding only the static ``binary``
        (--rootfs, no image), so that a broken image (an entrypoint, a missing
        file) fails the tests instead of passing for a machine without podman."""
        with tempfile.TemporaryDirectory(prefix="release-capsule-probe-") as root:
            shutil.copy(binary, Path(root) / "probe")
            ran = self.run("run", "--rm", "--network", "host", "--rootfs", root, "/probe", "--version")
        if ran.returncode != 0:
            return (f"podman cannot run a container here: {' '.join(self.argv('run', '--rootfs', '...'))}: "
                    f"{ran.stderr.strip()} (with CONTAINERS_CONF={self.conf}; scripts/bootstrap writes the settings "
                    "these machines need)")
        return None

    def argv(self, *args: str) -> list[str]:
        return [*PODMAN, *args]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True, timeout=timeout)

    def build(self, tag: str, binary: Path, *tools: str) -> str:
        """scripts/image --binary ... TAG; the image ID it prints."""
        proc = subprocess.run([str(REPO_ROOT / "scripts" / "image"), "--binary", str(binary), *tools, tag],
                              env=self.env, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise AssertionError(f"scripts/image failed (exit {proc.returncode}):\n{proc.stderr}")
        return proc.stdout.strip()

    def remove_image(self, tag: str) -> None:
        self.run("rmi", "--force", tag)

    def pid1(self, name: str, proc: subprocess.Popen, timeout: float = 30) -> int:
        """The host pid of the container's PID 1, once it runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            state = self.run("inspect", "--format", "{{.State.Pid}}", name)
            if state.returncode == 0 and state.stdout.strip() not in ("", "0"):
                return int(state.stdout.strip())
            time.sleep(0.05)
        raise AssertionError(f"container {name} never ran (podman run: exit {proc.poll()})")


def sigint_ignored(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    return False


class RunnerContainer(RunnerStep):
    """``RunnerContainer(tmp_path, repo_root, podman, image)``: the runner's step
    (runner_step.py) run as `podman run` of ``image``; see the module docstring.

    ``environment(...)`` is the runner's container environment (the `-e NAME`
    list); ``start(step, env)`` returns the `podman run` Popen, with
    ``container`` (its name) set; ``close()`` removes what is left."""

    # DockerInstanceLabel: the first 6 hex of the runner's .runner file's sha256.
    LABEL = hashlib.sha256(b"release-capsule tests: a runner").hexdigest()[:6]

    def __init__(self, tmp_path: Path, repo_root: Path, podman: Podman, image: str):
        super().__init__(tmp_path, repo_root)
        self.podman = podman
        self.image = image
        self.names: list[str] = []

    def environment(self, step: Step, **kwargs) -> dict[str, str]:
        return self.runner_environment(step, **kwargs)

    def container_name(self) -> str:
        # ContainerDisplayName: NameValidation.Sanitize(image) + "_" + 6 hex of a new guid.
        name = re.sub(r"[^A-Za-z0-9_.-]", "", self.image) + "_" + uuid.uuid4().hex[:6]
        self.names.append(name)
        return name

    def docker_run_args(self, step: Step, env: dict[str, str], name: str) -> list[str]:
        """DockerRun's arguments after `run`, in its order."""
        args = ["--name", name, "--label", self.LABEL, "--workdir", "/github/workspace", "--rm"]
        for key in env:
            args += ["-e", key]
        args += ["-e", "GITHUB_ACTIONS=true"]
        if "CI" not in env:
            args += ["-e", "CI=true"]
        if self.entrypoint:
            args += ["--entrypoint", self.entrypoint]
        args += ["--network", "host"]
        for host, container in self.mounts(step):
            args += ["-v", f"{host}:{container}"]
        return [*args, self.image, *self.args]

    def start(self, step: Step, env: dict[str, str]) -> subprocess.Popen:
        self.own_as_runner(step)
        name = self.container_name()
        argv = [*DEFAULT_SIGNALS, *self.podman.argv("run", *self.docker_run_args(step, env, name))]
        # The values of the -e names come from podman's own environment, as
        # docker's come from the runner's.
        proc = subprocess.Popen(argv, env={**self.podman.env, **env},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc.container = name
        return proc

    def run(self, step: Step, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
        proc = self.start(step, env)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def close(self) -> None:
        """Removes the containers that a failed test left running (the runner
        kills `docker run`, which does not stop the container)."""
        for name in self.names:
            self.podman.run("rm", "--force", "--ignore", "--time", "0", name)
