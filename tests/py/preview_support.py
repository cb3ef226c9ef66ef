"""The world a pull-request preview runs in (spec section 13), for
test_action_preview.py and bench/preview.py:

- the app repository in the fake GitHub (a real bare git repository): main
  with the release commits, and the pull request's head on top;
- the base release published to the real registry by the real binary
  (`publish`), its image seeded beside it;
- the GitOps repository: each environment's values files on main, and what
  each stage rendered on its branch (`stage/<env>`), as Kargo's helm-template
  step writes it (outLayout: flat, one file per object), rendered from the
  base capsule's chart with the base release's image;
- a `helm create` chart whose deployment takes the image as one string (the
  values key the stage sets literally), and a Secret fed from the values.

Rendering goes through tests/py/tools/helm, the tests' stand-in for the Helm
CLI (see that file).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from action_support import seed_image
from harness import REPO_ROOT

HELM_STANDIN = REPO_ROOT / "tests" / "py" / "tools" / "helm"
APP_OWNER, APP_REPO = "Codertocat", "Hello-World"  # events/pull_request.json's repository
GITOPS = "code-dot-org/k8s-gitops"
GITOPS_TOKEN = "github_pat_11PREVIEW0123456789abcdefghijkl"
CONFIG_PATH = ".github/release-capsule-preview.yaml"
# The stages set no namespace: Kargo renders into the Project's.
NAMESPACE = "kargo-project-codeai"
ENVIRONMENTS = ("staging", "test", "production")
CREATED = "2026-11-20T10:11:12Z"

# Each environment's values: its envType file, then its deployment file
# (merged in that order, as the stages' yaml-merge steps do).
ENV_VALUES = {
    "staging": ({"replicaCount": 2, "dbPassword": "staging-db-Pa55word"},
                {"apiToken": "staging-api-T0ken-AAAA"}),
    "test": ({"replicaCount": 3, "dbPassword": "test-db-Pa55word"},
             {"apiToken": "test-api-T0ken-BBBB"}),
    "production": ({"dbPassword": "production-db-Pa55word"},
                   {"apiToken": "production-api-T0ken-CCCC"}),
}

SECRET_TEMPLATE = """apiVersion: v1
kind: Secret
metadata:
  name: {{ include "demo.fullname" . }}-db
  namespace: {{ .Release.Namespace }}
type: Opaque
data:
  password: {{ .Values.dbPassword | b64enc | quote }}
stringData:
  token: {{ .Values.apiToken | quote }}
"""


def secret_values() -> list[str]:
    """Every environment's Secret values, as the tests grep for them."""
    return [v for env in ENV_VALUES.values() for part in env for k, v in part.items() if k != "replicaCount"]


def values_paths(env: str) -> list[str]:
    return [f"apps/codeai/envTypes/{env}.values.yaml", f"apps/codeai/deployments/{env}/values.yaml"]


def render_path(env: str) -> str:
    return f"apps/codeai/deployments/{env}/deploy"


def prepare_chart(chart: Path) -> None:
    """A `helm create` chart as the stages render it: `image` is one string."""
    deployment = chart / "templates" / "deployment.yaml"
    text = deployment.read_text()
    text = text.replace('image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"',
                        "image: {{ .Values.image | quote }}")
    text = text.replace("imagePullPolicy: {{ .Values.image.pullPolicy }}", "imagePullPolicy: IfNotPresent")
    assert "{{ .Values.image | quote }}" in text, "helm create's deployment changed"
    deployment.write_text(text)
    values = yaml.safe_load((chart / "values.yaml").read_text())
    values.update({"image": "nginx:1.0", "dbPassword": "", "apiToken": ""})
    (chart / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    (chart / "templates" / "secret.yaml").write_text(SECRET_TEMPLATE)


def deep_merge(into: dict, over: dict) -> dict:
    out = copy.deepcopy(into)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def helm_env() -> dict[str, str]:
    """What the binary (and the stand-in) run with: the venv's python first on PATH."""
    return {"RELEASE_CAPSULE_HELM": str(HELM_STANDIN),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def helm_template(chart: Path, env: str, values: dict, image_ref: str, work: Path) -> str:
    values_file = work / f"values-{env}.yaml"
    values_file.write_text(yaml.safe_dump(values))
    proc = subprocess.run([str(HELM_STANDIN), "template", env, str(chart), "--namespace", NAMESPACE, "--values",
                           str(values_file), "--set-literal", f"image={image_ref}"],
                          capture_output=True, text=True, env={**os.environ, **helm_env()}, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def flat_files(manifest: str) -> dict[str, bytes]:
    """Kargo's helm-template outLayout: flat: one file per object, named
    `[group-]kind[-namespace]-name.yaml` (helm_template_runner.go)."""
    files: dict[str, bytes] = {}
    for doc in (d for d in manifest.split("\n---") if d.strip()):
        obj = yaml.safe_load(doc)
        if not obj:
            continue
        group = obj["apiVersion"].rsplit("/", 1)[0] if "/" in obj["apiVersion"] else ""
        name = obj["kind"]
        if group:
            name = group.replace(".", "_") + "-" + name
        if obj["metadata"].get("namespace"):
            name += "-" + obj["metadata"]["namespace"]
        name += "-" + obj["metadata"]["name"]
        body = "\n".join(line for line in doc.strip().splitlines() if not line.startswith("# Source:")).strip()
        files[f"{name.lower()}.yaml"] = (body + "\n").encode()
    return files


class PreviewWorld:
    """See the module docstring. ``base`` is the merge base (main's tip), ``head``
    the pull request's commit; ``base_chart`` the chart as released."""

    def __init__(self, step, run_cli, tmp_path: Path, *, environments=ENVIRONMENTS, rendered=("staging", "test"),
                 publish_base=True, capsule_on_parent=False):
        self.step, self.run_cli, self.tmp = step, run_cli, tmp_path
        self.chart = step.workspace / "charts" / "demo"
        prepare_chart(self.chart)
        self.base_chart = tmp_path / "released" / "demo"
        shutil.copytree(self.chart, self.base_chart)
        self.environments, self.rendered = environments, rendered
        git = step.github.git
        self.app = git.create(APP_OWNER, APP_REPO, files={"README.md": b"app\n"})
        self.released = self.app.head("main")
        if capsule_on_parent:
            # The merge base itself has no capsule: its first parent has.
            self.app.commit_files("main", {"docs.md": b"docs only\n"}, "Docs")
        self.base = self.app.head("main")
        self.image_repo = step.image.split("/", 1)[1]
        self.base_image_digest = seed_image(step.registry, self.image_repo, self.released)
        if publish_base:
            self.publish(self.released)
        self.gitops = git.create(*GITOPS.split("/"), files=self.values_files())
        git.grant(*GITOPS.split("/"), GITOPS_TOKEN, "read")
        for env in rendered:
            manifest = helm_template(self.base_chart, env, self.env_values(self.base_chart, env),
                                     f"{step.image}@{self.base_image_digest}", tmp_path)
            files = {f"{render_path(env)}/{n}": b for n, b in flat_files(manifest).items()}
            self.gitops.commit_files(f"stage/{env}", files, f"Render {env}")
        (step.workspace / ".github").mkdir(exist_ok=True)
        (step.workspace / CONFIG_PATH).write_text(yaml.safe_dump(self.config(), sort_keys=False))

    def values_files(self) -> dict[str, bytes]:
        files = {}
        for env in self.environments:
            for path, values in zip(values_paths(env), ENV_VALUES[env]):
                files[path] = yaml.safe_dump(values).encode()
        return files

    def env_values(self, chart: Path, env: str) -> dict:
        merged = {}
        for part in ENV_VALUES[env]:
            merged = deep_merge(merged, part)
        return merged

    def config(self) -> dict:
        envs = []
        for env in self.environments:
            e = {"name": env, "releaseName": env, "namespace": NAMESPACE, "valuesFiles": values_paths(env)}
            if env in self.rendered:
                e["rendered"] = {"branch": f"stage/{env}", "path": render_path(env)}
            envs.append(e)
        return {"schemaVersion": "release-capsule-preview/v1", "gitops": {"repository": GITOPS, "ref": "main"},
                "imageKey": "image", "environments": envs}

    def publish(self, sha: str, chart: Path | None = None) -> dict:
        proc = self.run_cli("publish", "--sha", sha, "--image", self.step.image, "--source-repository",
                            f"https://github.com/{APP_OWNER}/{APP_REPO}", "--package-path", str(chart or self.base_chart),
                            "--created", CREATED, "--json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def pull_request(self, files: dict[str, bytes] | None = None, *, fork: bool = False, seed_head_image: bool = True) -> str:
        """Commits the pull request on a branch from main, and points the step at it."""
        from harness.fake_git import git as run_git
        run_git(self.app.path, "update-ref", "refs/heads/feature", self.base)
        head = self.app.commit_files("feature", files or {"CHANGELOG.md": b"change\n"}, "The change")
        payload = json.loads((self.step.events / "pull_request.json").read_text())
        payload["pull_request"]["head"]["sha"] = head
        payload["pull_request"]["base"]["sha"] = self.base
        if fork:
            payload["pull_request"]["head"]["repo"]["full_name"] = "someone-else/Hello-World"
        self.step.event("pull_request", payload)
        self.step.inputs(preview_config=CONFIG_PATH, gitops_token="" if fork else GITOPS_TOKEN)
        self.step.env.update(helm_env())
        if seed_head_image:
            self.head_image_digest = seed_image(self.step.registry, self.image_repo, head, created="2026-11-21T10:11:12Z")
        self.head = head
        return head

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.chart / relative
        text = path.read_text()
        assert old in text, (relative, old)
        path.write_text(text.replace(old, new, 1))
