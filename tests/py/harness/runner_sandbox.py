"""Runs the action the way the GitHub Actions runner runs a container action,
with bubblewrap standing in for Docker (nothing else can run containers here).

What actions/runner's ContainerActionHandler (src/Runner.Worker/Handlers/
ContainerActionHandler.cs) and `docker run` do, and how it is reproduced:

- Root filesystem: only what the Dockerfile's final stage holds, the binary at
  /release-capsule, the CA bundle and an empty world-writable /tmp, plus the
  three files Docker itself bind-mounts into every container (/etc/hosts,
  /etc/hostname, /etc/resolv.conf). Nothing of the host is visible.
- Process: real root, no user namespace (Docker uses none; inside one, files the
  runner's user owns would turn unwritable, which Docker never does), Docker's
  default capability set and nothing else, PID 1 of a new PID namespace (so
  signals without a handler are ignored, as in a container), working directory
  /github/workspace. The network is the host's: the registry and the fake
  GitHub listen on loopback, and the tool speaks plain HTTP only to loopback.
- Mounts: the workspace (owned by uid 1001, as on hosted runners) at
  /github/workspace, the runner's _github_home, _github_workflow (event.json)
  and _runner_file_commands directories, and RUNNER_TEMP at /github/runner_temp.
  The file-command files (set_output_<uuid>, set_env_<uuid>, add_path_<uuid>,
  save_state_<uuid>, step_summary_<uuid>) exist empty before the step starts.
- Environment, as the handler builds it: every input declared in action.yml as
  INPUT_<NAME> (hyphens kept; empty ones present and empty; defaults such as
  ${{ github.token }} evaluated), the GITHUB_* variables of the github context,
  RUNNER_*, ACTIONS_RUNTIME_*, CI and GITHUB_ACTIONS, HOME=/github/home, each
  value translated from host paths to container paths; then what docker run
  adds (PATH, HOSTNAME) and the image's ENV (SSL_CERT_FILE). No GITHUB_TOKEN:
  the runner only sets one when the workflow does.
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
from dataclasses import dataclass, field
from pathlib import Path

import yaml

RUNNER_UID = 1001  # the `runner` user of GitHub-hosted runners

# Docker's default capability set (moby's oci/caps/defaults.go).
DOCKER_DEFAULT_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)

# What `docker run` puts in the environment of an image that sets no PATH.
DOCKER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The github-context keys the runner exports as GITHUB_<KEY> (GitHubContext's
# allow-list), in the runner's order.
GITHUB_CONTEXT_KEYS = (
    "action", "action_path", "action_ref", "action_repository", "actor", "actor_id", "api_url",
    "base_ref", "env", "event_name", "event_path", "graphql_url", "head_ref", "job", "output",
    "path", "ref", "ref_name", "ref_protected", "ref_type", "repository", "repository_id",
    "repository_owner", "repository_owner_id", "retention_days", "run_attempt", "run_id",
    "run_number", "server_url", "sha", "state", "step_summary", "triggering_actor", "workflow",
    "workflow_ref", "workflow_sha", "workspace",
)

FILE_COMMANDS = ("set_output", "set_env", "add_path", "save_state", "step_summary")

ROOTFS_ENV = {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"}  # the Dockerfile's ENV


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def input_var(name: str) -> str:
    """The runner's name for an input's variable: upper case, ' ' -> '_'."""
    return "INPUT_" + name.replace(" ", "_").upper()


def _evaluate_default(value: str, github: dict[str, str]) -> str:
    """The two expressions action.yml's defaults use."""
    for key in ("actor", "token"):
        value = value.replace("${{ github.%s }}" % key, github.get(key, ""))
    if "${{" in value:
        raise ValueError(f"sandbox: cannot evaluate the default {value!r}")
    return value


@dataclass
class Step:
    """One step's host side, laid out like a runner's _work directory."""

    root: Path
    workspace: Path
    temp: Path
    home: Path
    workflow: Path
    file_commands: Path
    files: dict[str, Path] = field(default_factory=dict)  # set_output -> host file

    def read(self, command: str) -> str:
        return self.files[command].read_text()


class RunnerSandbox:
    """``RunnerSandbox(tmp_path, binary, repo_root)``; see the module docstring.

    ``prepare(repo, event_name, payload)`` lays out the host directories;
    ``environment(...)`` builds the container's environment; ``start(...)``
    starts the step and returns a ``subprocess.Popen`` whose ``pid1`` attribute
    is the host pid of the sandboxed PID 1 (what ``docker kill`` signals).
    ``start_cli(args, env, binds)`` runs a CLI command the same way, PID 1 of
    the same kind of container (a container step, a Kubernetes Job).
    """

    def __init__(self, tmp_path: Path, binary: Path, repo_root: Path):
        self.tmp = tmp_path
        self.binary = Path(binary)
        action = yaml.safe_load((repo_root / "action.yml").read_text())
        self.inputs: dict = action.get("inputs", {})
        self.args: list[str] = [str(a) for a in action["runs"].get("args", [])]
        self.rootfs = self._rootfs()

    def _rootfs(self) -> Path:
        root = self.tmp / "rootfs"
        (root / "etc/ssl/certs").mkdir(parents=True)
        (root / "tmp").mkdir()
        os.chmod(root / "tmp", 0o1777)
        shutil.copy2(self.binary, root / "release-capsule")
        ca = Path("/etc/ssl/certs/ca-certificates.crt")
        (root / "etc/ssl/certs/ca-certificates.crt").write_bytes(ca.read_bytes() if ca.is_file() else b"")
        # What Docker bind-mounts into every container.
        container_id = uuid.uuid4().hex[:12]
        (root / "etc/hostname").write_text(container_id + "\n")
        (root / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n172.17.0.2\t{container_id}\n")
        (root / "etc/resolv.conf").write_text("nameserver 127.0.0.53\n")
        self.hostname = container_id
        return root

    def prepare(self, repo: str, event_name: str, payload: dict) -> Step:
        work = self.tmp / "_work"
        name = repo.split("/")[-1]
        temp = work / "_temp"
        step = Step(
            root=work,
            workspace=work / name / name,
            temp=temp,
            home=temp / "_github_home",
            workflow=temp / "_github_workflow",
            file_commands=temp / "_runner_file_commands",
        )
        for d in (step.workspace, step.home, step.workflow, step.file_commands):
            d.mkdir(parents=True, exist_ok=True)
        (step.workflow / "event.json").write_text(json.dumps(payload))
        for command in FILE_COMMANDS:
            path = step.file_commands / f"{command}_{uuid.uuid4()}"
            path.touch()
            step.files[command] = path
        self.event_name = event_name
        return step

    def translations(self, step: Step) -> list[tuple[str, str]]:
        # The handler's order: the first matching prefix wins.
        return [
            (str(step.home), "/github/home"),
            (str(step.workflow), "/github/workflow"),
            (str(step.file_commands), "/github/file_commands"),
            (str(step.workspace), "/github/workspace"),
            (str(step.temp), "/github/runner_temp"),
        ]

    def to_container(self, step: Step, value: str) -> str:
        """ContainerInfo.TranslateToContainerPath."""
        for host, container in self.translations(step):
            if value == host:
                return container
            if value.startswith(host + "/"):
                return container + value[len(host):]
        return value

    def environment(self, step: Step, *, github: dict[str, str], inputs: dict[str, str],
                    debug: bool = False, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The container's environment. ``github`` holds the github context
        (actor, token, repository, sha, ref, api_url, ...); ``inputs`` the
        step's `with:` values; ``extra`` the step's `env:`."""
        env: dict[str, str] = {}
        # 1. Inputs: every declared one, the workflow's value or the default.
        for name, spec in self.inputs.items():
            spec = spec or {}
            if name in inputs:
                value = inputs[name]
            else:
                value = _evaluate_default(str(spec.get("default", "") or ""), github)
            env[input_var(name)] = value
        unknown = set(inputs) - set(self.inputs)
        if unknown:
            raise ValueError(f"sandbox: inputs not declared in action.yml: {sorted(unknown)}")
        # 2. The step's env: (workflow-level env merged in by the caller).
        env.update(extra or {})
        # 3. The github context, as GITHUB_* (the runner sets them over env:).
        context = {
            "action": "__code-dot-org_release-capsule",
            "action_ref": "",
            "action_repository": "",
            "event_name": self.event_name,
            "event_path": str(step.workflow / "event.json"),
            "workspace": str(step.workspace),
            "output": str(step.files["set_output"]),
            "env": str(step.files["set_env"]),
            "path": str(step.files["add_path"]),
            "state": str(step.files["save_state"]),
            "step_summary": str(step.files["step_summary"]),
            "retention_days": "90",
            "graphql_url": github.get("api_url", "") + "/graphql",
            **{k: v for k, v in github.items() if k != "token"},
        }
        for key in GITHUB_CONTEXT_KEYS:
            if key in context:
                env["GITHUB_" + key.upper()] = context[key]
        env["GITHUB_ACTIONS"] = "true"
        env["CI"] = "true"
        # 4. The runner context and the Actions runtime.
        env.update({
            "RUNNER_OS": "Linux",
            "RUNNER_ARCH": "X64",
            "RUNNER_NAME": "GitHub Actions 7",
            "RUNNER_ENVIRONMENT": "github-hosted",
            "RUNNER_TOOL_CACHE": "/opt/hostedtoolcache",
            "RUNNER_TEMP": str(step.temp),
            "RUNNER_WORKSPACE": str(step.workspace.parent),
            "ACTIONS_RUNTIME_URL": "https://pipelines.actions.githubusercontent.com/fake/",
            "ACTIONS_RUNTIME_TOKEN": "fake-actions-runtime-token",
            "ACTIONS_CACHE_URL": "https://artifactcache.actions.githubusercontent.com/fake/",
        })
        if debug:
            env["RUNNER_DEBUG"] = "1"
        env["HOME"] = str(step.home)
        # Every value as the container sees it.
        env = {k: self.to_container(step, v) for k, v in env.items()}
        # 5. What docker run and the image add.
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
        argv += [
            "--bind", str(step.workspace), "/github/workspace",
            "--bind", str(step.home), "/github/home",
            "--bind", str(step.workflow), "/github/workflow",
            "--bind", str(step.file_commands), "/github/file_commands",
            "--bind", str(step.temp), "/github/runner_temp",
            "--chdir", "/github/workspace",
            "--clearenv",
        ]
        for k, v in env.items():
            argv += ["--setenv", k, v]
        return argv + ["/release-capsule", *self.args]

    def own_as_runner(self, step: Step) -> None:
        """The runner user owns the workspace and the step's files."""
        for top in (step.workspace.parent, step.temp):
            for dirpath, dirnames, filenames in os.walk(top):
                os.chown(dirpath, RUNNER_UID, RUNNER_UID)
                for n in filenames:
                    os.chown(os.path.join(dirpath, n), RUNNER_UID, RUNNER_UID, follow_symlinks=False)

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
