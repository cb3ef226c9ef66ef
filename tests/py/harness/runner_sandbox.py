"""Runs the action the way the GitHub Actions runner runs a container action,
with bubblewrap standing in for Docker: the fast path (test_runner_sandbox.py).
The real image under podman is container.py (test_container.py); what the
runner prepares for both (directories, mounts, environment) is runner_step.py.

What `docker run` does, and how it is reproduced here:

- Root filesystem: only what the Dockerfile's final stage holds, laid out by
  scripts/rootfs as the Dockerfile's build stage does (the binary at
  /release-capsule, the CA bundle and an empty world-writable /tmp), plus the
  three files Docker itself bind-mounts into every container (/etc/hosts,
  /etc/hostname, /etc/resolv.conf). Nothing of the host is visible.
- Process: real root, no user namespace (Docker uses none; inside one, files the
  runner's user owns would turn unwritable, which Docker never does), Docker's
  default capability set and nothing else, PID 1 of a new PID namespace (so
  signals without a handler are ignored, as in a container), working directory
  /github/workspace. The network is the host's: the registry and the fake
  GitHub listen on loopback, and the tool speaks plain HTTP only to loopback.
- Mounts: the runner's (runner_step.py), except the Docker socket.
- Environment: the runner's (runner_step.py), then what `docker run` adds
  (GITHUB_ACTIONS and CI from its -e flags, PATH, HOSTNAME) and the image's ENV
  (SSL_CERT_FILE).
- Arguments: action.yml's `runs.args`, after the image's ENTRYPOINT.

The binary: the Dockerfile builds a static musl binary, but the musl target
cannot be installed on the machines that run these tests, so the harness takes
a static glibc build (-C target-feature=+crt-static) of the same sources. It
needs no loader or library from the host either, which is what an empty root
file system demands; the only difference is the C library it embeds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from .runner_step import DOCKER_SOCKET, RUNNER_UID, RunnerStep, Step  # noqa: F401 (RUNNER_UID re-exported)

# Docker's default capability set (moby's oci/caps/defaults.go).
DOCKER_DEFAULT_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)

# What `docker run` puts in the environment of an image that sets no PATH.
DOCKER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

ROOTFS_ENV = {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"}  # the Dockerfile's ENV


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


class RunnerSandbox(RunnerStep):
    """``RunnerSandbox(tmp_path, binary, repo_root)``; see the module docstring.

    ``prepare(repo, event_name, payload)`` lays out the host directories;
    ``environment(...)`` builds the container's environment; ``start(...)``
    starts the step and returns a ``subprocess.Popen`` whose ``pid1`` attribute
    is the host pid of the sandboxed PID 1 (what ``docker kill`` signals).
    ``start_cli(args, env, binds)`` runs a CLI command the same way, PID 1 of
    the same kind of container (a container step, a Kubernetes Job).
    """

    def __init__(self, tmp_path: Path, binary: Path, repo_root: Path):
        super().__init__(tmp_path, repo_root)
        self.binary = Path(binary)
        self.rootfs = self._rootfs(repo_root)

    def _rootfs(self, repo_root: Path) -> Path:
        root = self.tmp / "rootfs"
        subprocess.run([str(repo_root / "scripts" / "rootfs"), str(root), "--binary", str(self.binary)],
                       check=True, capture_output=True, text=True)
        # What Docker bind-mounts into every container.
        container_id = uuid.uuid4().hex[:12]
        (root / "etc/hostname").write_text(container_id + "\n")
        (root / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n172.17.0.2\t{container_id}\n")
        (root / "etc/resolv.conf").write_text("nameserver 127.0.0.53\n")
        self.hostname = container_id
        return root

    def environment(self, step: Step, *, github: dict[str, str], inputs: dict[str, str],
                    debug: bool = False, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The container's environment: the runner's (see
        ``RunnerStep.runner_environment``), then what `docker run` and the
        image add."""
        env = self.runner_environment(step, github=github, inputs=inputs, debug=debug, extra=extra)
        env["GITHUB_ACTIONS"] = "true"
        env.setdefault("CI", "true")
        env.setdefault("PATH", DOCKER_PATH)
        env["HOSTNAME"] = self.hostname
        for k, v in ROOTFS_ENV.items():
            env.setdefault(k, v)
        return env

    def _container(self, info_fd: int) -> list[str]:
        """bwrap's part that makes a container: namespaces, PID 1, Docker's
        capabilities, the root file system."""
        argv = [
            "bwrap",
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--as-pid-1", "--die-with-parent", "--info-fd", str(info_fd),
            "--hostname", self.hostname,
            "--cap-drop", "ALL",
        ]
        for cap in DOCKER_DEFAULT_CAPS:
            argv += ["--cap-add", cap]
        return argv + ["--bind", str(self.rootfs), "/", "--proc", "/proc", "--dev", "/dev"]

    def command(self, step: Step, env: dict[str, str], info_fd: int) -> list[str]:
        argv = self._container(info_fd)
        for host, container in self.mounts(step):
            if container != DOCKER_SOCKET:  # no mount point for it in the bare rootfs
                argv += ["--bind", host, container]
        argv += [
            "--chdir", "/github/workspace",
            "--clearenv",
        ]
        for k, v in env.items():
            argv += ["--setenv", k, v]
        return argv + ["/release-capsule", *self.args]

    def start(self, step: Step, env: dict[str, str]) -> subprocess.Popen:
        self.own_as_runner(step)
        return self._spawn(lambda info_fd: self.command(step, env, info_fd))

    def start_cli(self, args: list[str], env: dict[str, str], binds: dict[Path, str]) -> subprocess.Popen:
        """The binary as a CLI command, PID 1 of its container as in a
        Kubernetes Job: ``binds`` maps host directories to container paths;
        ``env`` is all of its environment."""

        def command(info_fd: int) -> list[str]:
            argv = self._container(info_fd)
            for host, container in binds.items():
                argv += ["--bind", str(host), container]
            argv += ["--chdir", "/tmp", "--clearenv"]
            for k, v in env.items():
                argv += ["--setenv", k, v]
            return argv + ["/release-capsule", *args]
        return self._spawn(command)

    def _spawn(self, command) -> subprocess.Popen:
        read_fd, write_fd = os.pipe()
        proc = subprocess.Popen(
            command(write_fd),
            pass_fds=(write_fd,),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(write_fd)
        with os.fdopen(read_fd) as info:
            text = info.read()
        # bwrap writes {"child-pid": N} once the sandboxed process exists.
        proc.pid1 = json.loads(text)["child-pid"] if text.strip() else None
        return proc

    def run(self, step: Step, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
        proc = self.start(step, env)
        out, err = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
