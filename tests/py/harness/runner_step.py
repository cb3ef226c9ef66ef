"""The runner's side of one container action step, as actions/runner's
ContainerActionHandler (src/Runner.Worker/Handlers/ContainerActionHandler.cs)
prepares it before `docker run`, shared by the two ways the tests start the
container: bubblewrap around the bare binary (runner_sandbox.py, the fast path)
and the real image under podman (container.py).

- Host directories, laid out like a runner's _work directory: the workspace
  (owned by uid 1001, the `runner` user of hosted runners), RUNNER_TEMP with
  _github_home, _github_workflow (event.json) and _runner_file_commands, whose
  files (set_output_<uuid>, set_env_<uuid>, add_path_<uuid>, save_state_<uuid>,
  step_summary_<uuid>) exist empty before the step starts.
- The mounts, in the handler's order: the Docker socket, RUNNER_TEMP at
  /github/runner_temp, then /github/home, /github/workflow,
  /github/file_commands and /github/workspace; each one is also a path
  translation for the environment's values.
- The container's environment (ContainerInfo.ContainerEnvironmentVariables):
  every input declared in action.yml as INPUT_<NAME> (hyphens kept; empty ones
  present and empty; defaults such as ${{ github.token }} evaluated), the
  step's env:, the GITHUB_* variables of the github context (GitHubContext's
  allow-list), RUNNER_*, ACTIONS_RUNTIME_*, HOME, each value translated from
  host paths to container paths. No GITHUB_TOKEN: the runner only sets one
  when the workflow does. GITHUB_ACTIONS and CI are not in it: `docker run`
  gets them as literal `-e GITHUB_ACTIONS=true -e CI=true` (DockerRun).
- The arguments: action.yml's `runs.args`, after the image's ENTRYPOINT.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

RUNNER_UID = 1001  # the `runner` user of GitHub-hosted runners

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

# Where the handler mounts the Docker daemon's socket (source and target alike).
DOCKER_SOCKET = "/var/run/docker.sock"


def input_var(name: str) -> str:
    """The runner's name for an input's variable: upper case, ' ' -> '_'."""
    return "INPUT_" + name.replace(" ", "_").upper()


def _evaluate_default(value: str, github: dict[str, str]) -> str:
    """The two expressions action.yml's defaults use."""
    for key in ("actor", "token"):
        value = value.replace("${{ github.%s }}" % key, github.get(key, ""))
    if "${{" in value:
        raise ValueError(f"runner step: cannot evaluate the default {value!r}")
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
    docker_socket: Path | None = None  # what is mounted at /var/run/docker.sock

    def read(self, command: str) -> str:
        return self.files[command].read_text()


class RunnerStep:
    """``RunnerStep(tmp_path, repo_root)``: action.yml read once; see the module
    docstring. Subclasses start the container (``start``, ``run``)."""

    def __init__(self, tmp_path: Path, repo_root: Path):
        self.tmp = tmp_path
        action = yaml.safe_load((repo_root / "action.yml").read_text())
        self.inputs: dict = action.get("inputs", {})
        self.entrypoint: str = str(action["runs"].get("entrypoint") or "")
        self.args: list[str] = [str(a) for a in action["runs"].get("args", [])]

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

    def docker_socket(self, step: Step) -> Path:
        """A stand-in for the Docker daemon's socket: a bound unix socket that
        nobody answers (the tool never talks to Docker; the mount must exist)."""
        if step.docker_socket is None and not (step.root / "docker.sock").is_socket():
            # Bound through /proc/self/fd: a unix socket's path is limited to 107
            # bytes, and pytest's temporary directories can be longer.
            fd = os.open(step.root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.bind(f"/proc/self/fd/{fd}/docker.sock")
            finally:
                os.close(fd)
        step.docker_socket = step.root / "docker.sock"
        return step.docker_socket

    def mounts(self, step: Step) -> list[tuple[str, str]]:
        """(host, container) bind mounts, in the handler's order."""
        return [
            (str(self.docker_socket(step)), DOCKER_SOCKET),
            (str(step.temp), "/github/runner_temp"),
            (str(step.home), "/github/home"),
            (str(step.workflow), "/github/workflow"),
            (str(step.file_commands), "/github/file_commands"),
            (str(step.workspace), "/github/workspace"),
        ]

    def translations(self, step: Step) -> list[tuple[str, str]]:
        # ContainerInfo's path mappings, tried in order, the first match wins.
        # AddPathTranslateMapping inserts at the front, so this is the reverse
        # of the handler's mounts: RUNNER_TEMP, which holds three of the others,
        # comes last.
        return [(host, container) for host, container in reversed(self.mounts(step))
                if container != DOCKER_SOCKET]

    def to_container(self, step: Step, value: str) -> str:
        """ContainerInfo.TranslateToContainerPath."""
        for host, container in self.translations(step):
            if value == host:
                return container
            if value.startswith(host + "/"):
                return container + value[len(host):]
        return value

    def runner_environment(self, step: Step, *, github: dict[str, str], inputs: dict[str, str],
                           debug: bool = False, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The container's environment as the handler builds it (what `docker
        run` gets as `-e NAME`). ``github`` holds the github context (actor,
        token, repository, sha, ref, api_url, ...); ``inputs`` the step's
        `with:` values; ``extra`` the step's `env:`."""
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
            raise ValueError(f"runner step: inputs not declared in action.yml: {sorted(unknown)}")
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
        return {k: self.to_container(step, v) for k, v in env.items()}

    def own_as_runner(self, step: Step) -> None:
        """The runner user owns the workspace and the step's files."""
        for top in (step.workspace.parent, step.temp):
            for dirpath, dirnames, filenames in os.walk(top):
                os.chown(dirpath, RUNNER_UID, RUNNER_UID)
                for n in filenames:
                    os.chown(os.path.join(dirpath, n), RUNNER_UID, RUNNER_UID, follow_symlinks=False)
