"""The GitOps writer under faults, end to end: concurrent `export-freight` and
`record-gate` processes (several for the same release, several for different
ones) against the git-backed fake GitHub, with faults injected into every kind
of Git Data call (harness/git_faults.py: 5xx before and after the request is
applied, the ref update's 422 wordings, secondary rate limits, resets), and
another writer committing in between. Then the repository is read with git
itself, and every run's answer is checked against it. Shared by
tests/py/test_gitops_fault_run.py and bench/gitops_faults.py.

A wrong answer is any of: a run that exited 0 whose records are not on the
branch; a run that names a commit the branch does not hold; a release or gate
record committed more than once; a commit that changes nothing; a commit of
the other writer that is gone; `git fsck --strict` not clean; a history that
is not linear (fast-forward only). A run that fails says so (non-zero exit):
that is not a wrong answer, but it is counted, and so are records that no run
committed.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

FREIGHT = "warehouses/codeai/freight"
GATE = "warehouses/codeai/legacy-gitflow"


@dataclass
class Job:
    name: str
    args: list[str]
    records: list[str]  # paths that hold this run's records once it is done
    process: subprocess.Popen | None = None
    sent: set[str] = field(default_factory=set)  # commits it asked the branch to move to
    returncode: int | None = None
    report: dict | None = None
    stderr: str = ""


@dataclass
class Figures:
    runs: int = 0
    succeeded: int = 0
    requests: int = 0
    git_data_calls: int = 0
    faults: Counter = field(default_factory=Counter)
    ref_update_faults: Counter = field(default_factory=Counter)
    commits: int = 0
    other_writer_commits: int = 0
    seconds: float = 0.0
    wrong_answers: list[str] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)  # records no run committed

    def lines(self) -> list[str]:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items()))
        return [
            f"runs: {self.runs} concurrent writers, {self.succeeded} exited 0, in {self.seconds:.1f} s",
            f"requests: {self.requests} to the fake GitHub, {self.git_data_calls} of them Git Data calls",
            f"faults injected: {sum(self.faults.values())} ({kinds})",
            f"of which on the ref update: {sum(self.ref_update_faults.values())}",
            f"commits: {self.commits} by the writers, {self.other_writer_commits} by another writer in between",
            f"wrong answers: {len(self.wrong_answers)}; records never committed: {len(self.unrecorded)}",
        ]


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True, text=True, check=check)


def jobs(capsules: dict[str, str], pushes: list[tuple[str, str, str]], repository: str) -> list[Job]:
    """Two exports of each release (``sha -> capsule ref``) and one gate
    record per push (branch, sha, pushed at; a push listed twice is a re-run)."""
    out = []
    for sha, capsule in capsules.items():
        for n in range(2):
            out.append(Job(f"export git-{sha[:7]} #{n + 1}", ["export-freight", "--capsule", capsule, "--freight-path", FREIGHT],
                           [f"{FREIGHT}/git-{sha}/freight.yaml"]))
    for n, (branch, sha, at) in enumerate(pushes):
        out.append(Job(f"gate {branch} git-{sha[:7]} at {at} #{n + 1}",
                       ["record-gate", "--sha", sha, "--branch", branch, "--gate-path", GATE, "--merged-at", at],
                       [f"{GATE}/{branch}/merged/git-{sha}.yaml"]))
    for j in out:
        j.args += ["--gitops-repository", repository, "--json"]
    return out


def run(binary: Path, env: dict[str, str], fake, repo, all_jobs: list[Job], other_writer_commits: int = 3,
        timeout: float = 240) -> Figures:
    """Starts every job at once (each with a token of its own, so faults are
    counted per writer), waits, and checks the outcome."""
    theirs: list[str] = []
    lock = threading.Lock()

    def other_writer(r):
        with lock:  # ref updates arrive on parallel threads
            if len(theirs) < other_writer_commits:
                theirs.append(r.commit_files("main", {f"apps/other/{len(theirs)}.yaml": b"replicas: 2\n"}, "another writer"))

    fake.git.before_ref_update = other_writer
    before = set(git(repo.path, "rev-list", "main").stdout.split())
    calls = len(fake.calls)
    start = time.monotonic()
    for n, j in enumerate(all_jobs):
        j.process = subprocess.Popen([str(binary), *j.args], env={**env, "GITOPS_TOKEN": f"ghp_faultrun{n:04d}"},
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for j in all_jobs:
        out, j.stderr = j.process.communicate(timeout=timeout)
        j.returncode = j.process.returncode
        j.report = json.loads(out) if j.returncode == 0 and out.strip() else None
    fake.git.before_ref_update = None
    figures = Figures(runs=len(all_jobs), seconds=time.monotonic() - start)
    made = fake.calls[calls:]
    figures.requests = len(made)
    figures.git_data_calls = sum(1 for c in made if c.operation and c.operation.startswith("git/"))
    figures.faults = Counter(c.fault for c in made if c.fault)
    figures.ref_update_faults = Counter(c.fault for c in made if c.fault and c.operation == "git/update-ref")
    figures.other_writer_commits = len(theirs)
    # Which commits each writer asked the branch to move to (its token says who).
    for c in made:
        if c.operation == "git/update-ref" and isinstance(c.body, dict):
            n = int((c.authorization or "").rsplit("faultrun", 1)[-1] or -1)
            all_jobs[n].sent.add(c.body.get("sha"))
    check(repo.path, all_jobs, before, theirs, figures)
    return figures


def check(repo: Path, all_jobs: list[Job], before: set[str], theirs: list[str], f: Figures) -> None:
    wrong = f.wrong_answers
    fsck = git(repo, "fsck", "--strict", check=False)
    if fsck.returncode != 0 or "error" in fsck.stderr or "missing" in fsck.stdout + fsck.stderr:
        wrong.append(f"git fsck --strict: {fsck.stdout}{fsck.stderr}")
    history = git(repo, "rev-list", "--parents", "main").stdout.splitlines()
    if any(len(line.split()) > 2 for line in history):
        wrong.append("a merge commit: the branch was not moved fast-forward only")
    commits = [line.split()[0] for line in history if line.split()[0] not in before]
    f.commits = len(commits) - len(theirs)
    held = set(c for line in history for c in line.split()[:1])
    for c in theirs:
        if c not in held:
            wrong.append(f"the other writer's commit {c} is gone")
    for c in commits:
        if not git(repo, "diff-tree", "--no-commit-id", "-r", "--name-only", c).stdout.strip():
            wrong.append(f"commit {c} changes nothing (a duplicate)")
    # Records: each written once, by exactly one commit, and never changed after.
    for path in sorted({p for j in all_jobs for p in j.records}):
        touched = git(repo, "log", "--format=%H", "main", "--", path).stdout.split()
        if len(touched) > 1:
            wrong.append(f"{path}: committed {len(touched)} times")
        elif not touched:
            f.unrecorded.append(path)
    for j in all_jobs:
        if j.returncode != 0:
            f.failed_runs.append(f"{j.name}: exit {j.returncode}: {j.stderr.strip()[-300:]}")
            if "nothing was committed" in j.stderr and j.sent & held:
                wrong.append(f"{j.name}: says nothing was committed, but the branch holds its commit")
            continue
        f.succeeded += 1
        for path in j.records:
            if git(repo, "cat-file", "-e", f"main:{path}", check=False).returncode != 0:
                wrong.append(f"{j.name}: exit 0, but {path} is not on the branch")
        commit = (j.report or {}).get("commit")
        if commit is not None and commit not in held:
            wrong.append(f"{j.name}: reports commit {commit}, which the branch does not hold")
        if commit is not None and commit not in j.sent:
            wrong.append(f"{j.name}: reports commit {commit}, which it never sent")
