"""Helpers shared by the publish tests (test_publish.py, test_faults.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from harness import REPO_ROOT

SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
TAG = f"git-{SHA}"
SOURCE = "https://github.com/acme/app"
HELLO_CHART = REPO_ROOT / "examples" / "charts" / "hello"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def capsule_repo(repo: str) -> str:
    """The default capsule repository of an image repository."""
    return f"{repo}-release-capsule"


def publish_argv(image: str, *extra, chart: Path = HELLO_CHART, sha: str = SHA) -> list[str]:
    """``publish`` for ``image`` (host/repo) with the sample chart, JSON output."""
    return ["publish", "--sha", sha, "--image", image, "--source-repository", SOURCE,
            "--package-path", str(chart), "--json", *[str(e) for e in extra]]


def result_json(proc) -> dict:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    lines = [l for l in proc.stdout.splitlines() if l.strip()]
    assert len(lines) == 1, f"--json prints one line, got: {proc.stdout!r}"
    return json.loads(lines[0])


def writes(proxy) -> list:
    """Requests that change a registry: uploads, manifest PUTs, deletes."""
    return [e for e in proxy.log if e.method in WRITE_METHODS]


def skopeo_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "skopeo-home"
    home.mkdir(exist_ok=True)
    return {"PATH": os.environ["PATH"], "HOME": str(home)}


def skopeo(tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120, env=skopeo_env(tmp_path))
    if check:
        assert proc.returncode == 0, f"skopeo {' '.join(args)}: {proc.stderr}"
    return proc


def skopeo_push_layout(tmp_path: Path, layout_dir: Path, dest: str, creds: str | None = None) -> None:
    """Pushes an image layout the way other tools would: skopeo, all platforms, bytes kept."""
    args = ["copy", "--all", "--preserve-digests", "--dest-tls-verify=false"]
    if creds:
        args += ["--dest-creds", creds]
    skopeo(tmp_path, *args, f"oci:{layout_dir}", f"docker://{dest}")
