"""Concurrent publishes of one sha, for the race tests and bench/race.py.

A pair is two `publish` processes started together against the same
registry, each with its own release of the same commit:

- "capsule": the same image, two charts that differ by one line (so two
  releases: their package digests differ);
- "image": two different image layouts pushed with --image-layout under the
  same image tag (so two images, and two releases);
- "same": the same release twice (every run must succeed).

The rule checked (spec section 7, "Concurrency"): among runs of different
releases exactly one reports success, and the tag names that run's digest at
the end; every other run exits 1 naming both digests. Among runs of the same
release all succeed, and at most one reports `published=true` (only a run whose
own PUT made the tag name its digest), and at most one `imagePushed=true`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import image_layouts as il
from publish_support import HELLO_CHART, SOURCE, capsule_repo

KINDS = ("capsule", "image", "same")


@dataclass
class Run:
    returncode: int
    report: dict | None  # the --json line of a successful run
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass
class PairResult:
    kind: str
    runs: list[Run]
    capsule_tag: str | None  # what the capsule tag names at the end
    image_tag: str | None

    @property
    def successes(self) -> int:
        return sum(r.ok for r in self.runs)

    def problems(self) -> list[str]:
        """Everything the rule forbids that happened in this pair."""
        out = []
        for r in self.runs:
            if r.returncode not in (0, 1):
                out.append(f"exit {r.returncode}: {r.stderr.strip()[-400:]}")
        if self.kind == "same":
            if self.successes != len(self.runs):
                out.append("a run of the same release failed")
            for key in ("published", "imagePushed"):
                if self.claimed(key) > 1:
                    out.append(f"{self.claimed(key)} runs reported {key}=true")
            return out
        if self.successes != 1:
            out.append(f"{self.successes} runs reported success")
        winners = [r for r in self.runs if r.ok]
        if len(winners) == 1 and winners[0].report["digest"] != self.capsule_tag:
            out.append(f"the winner reported {winners[0].report['digest']}, the tag names {self.capsule_tag}")
        for loser in (r for r in self.runs if r.returncode == 1):
            named = [d for d in (self.capsule_tag, self.image_tag) if d and d in loser.stderr]
            if not named:
                out.append(f"a losing run did not name the digest the tag holds: {loser.stderr.strip()[-300:]}")
        return out

    def claimed(self, key: str = "published") -> int:
        """How many runs reported ``key`` (published, imagePushed) true."""
        return sum(bool(r.report and r.report[key]) for r in self.runs)

    @property
    def raced(self) -> bool:
        """Both runs got as far as pushing a tag (the race was real, not sequential)."""
        return all("was tagged" in r.stderr or r.ok for r in self.runs) and self.kind != "same"


def _chart(base: Path, n: int) -> Path:
    chart = base / f"chart-{n}"
    shutil.copytree(HELLO_CHART, chart)
    with (chart / "values.yaml").open("a") as f:
        f.write(f"\n# release variant {n}\n")
    return chart


def race_pair(binary: Path, env: dict[str, str], registry_host: str, repo: str, sha: str, kind: str,
              work: Path) -> PairResult:
    """Starts two publishes of ``sha`` at the same instant; waits for both."""
    work.mkdir(parents=True, exist_ok=True)
    image = f"{registry_host}/{repo}"
    argvs = []
    shared_layout = il.single_arch(work / "image-shared", tag=f"git-{sha}") if kind != "image" else None
    same_chart = _chart(work, 0) if kind != "capsule" else None
    for n in range(2):
        chart = same_chart or _chart(work, n)
        layout = shared_layout or il.single_arch(work / f"image-{n}", tag=f"git-{sha}", seed=100 + n)
        argvs.append([str(binary), "publish", "--sha", sha, "--image", image, "--source-repository", SOURCE,
                      "--package-path", str(chart), "--image-layout", str(layout.path), "--json"])
    procs = [subprocess.Popen(a, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for a in argvs]
    runs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        lines = [l for l in out.splitlines() if l.strip()]
        report = json.loads(lines[-1]) if p.returncode == 0 and lines else None
        runs.append(Run(p.returncode, report, err))
    return PairResult(kind, runs, _resolve(registry_host, capsule_repo(repo), sha), _resolve(registry_host, repo, sha))


def _resolve(host: str, repo: str, sha: str) -> str | None:
    import urllib.error
    import urllib.request
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/git-{sha}", method="HEAD", headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.headers.get("Docker-Content-Digest")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def clean_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TMPDIR": str(home),
            "DOCKER_CONFIG": str(home)}


def elapsed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start
