#!/usr/bin/env python3
"""The GitOps writer under faults: a report, not a test (the test is
tests/py/test_gitops_fault_run.py, which runs one round of the same).

    cargo build
    .venv/bin/python bench/gitops_faults.py [--bin target/<host>/debug/release-capsule] [--releases 3] [--rounds 3]

Each round starts, all at once, two `export-freight` runs per release and
`record-gate` runs for every release on two gate branches (one push re-run),
each a process of its own against the git-backed fake GitHub, with faults
injected into Git Data calls (tests/py/harness/git_faults.py) and another
writer committing in between. Then git reads the repository back, and every
run's answer is checked against it (tests/py/gitops_fault_run.py says what a
wrong answer is). It prints the figures the README quotes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "py"))

from gitops_fault_run import jobs, run  # noqa: E402
from harness.fake_github import FakeGitHub  # noqa: E402
from harness.git_faults import FaultPlan  # noqa: E402
from harness.registry import Registry  # noqa: E402
from verify_support import SOURCE, app_image_layout, skopeo_push  # noqa: E402


def publish(binary: str, env: dict[str, str], work: Path, image: str, capsule: str, sha: str, created: str) -> str:
    tag = f"git-{sha}"
    digest = app_image_layout(work / f"image-{sha}", tag, body=f"app {sha}\n".encode())
    skopeo_push("skopeo", work / f"image-{sha}", tag, f"{image}:{tag}")
    subprocess.run([binary, "build", "--sha", sha, "--image", image, "--image-digest", digest, "--capsule-repository", capsule,
                    "--source-repository", SOURCE, "--package-path", str(ROOT / "examples/charts/hello"), "--created", created,
                    "--output", str(work / f"capsule-{sha}")], check=True, capture_output=True, env=env)
    skopeo_push("skopeo", work / f"capsule-{sha}", tag, f"{capsule}:{tag}")
    return f"{capsule}:{tag}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "release-capsule"))
    ap.add_argument("--releases", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=float, default=0.12, help="fault rate of Git Data calls")
    ap.add_argument("--ref-update-rate", type=float, default=0.5, help="fault rate of ref updates")
    args = ap.parse_args()
    totals = Counter()
    faults: Counter = Counter()
    problems = []
    with tempfile.TemporaryDirectory() as tmp, Registry(access_log=False) as registry, FakeGitHub() as fake:
        work = Path(tmp)
        env = {"PATH": os.environ["PATH"], "HOME": tmp, "TMPDIR": tmp, "DOCKER_CONFIG": tmp, "GITHUB_API_URL": fake.url}
        image, capsule = f"{registry.host}/bench/app", f"{registry.host}/bench/app-release-capsule"
        shas = [f"{n + 1:x}" * 40 for n in range(args.releases)]
        capsules = {sha: publish(args.bin, env, work, image, capsule, sha, f"2026-11-2{n}T10:00:00Z") for n, sha in enumerate(shas)}
        pushes = [(branch, sha, f"2026-11-20T1{n}:00:00Z") for branch in ("production", "staging") for n, sha in enumerate(shas)]
        pushes.append(pushes[0])  # a re-run of the first push
        for r in range(args.rounds):
            repo = fake.git.create("acme", f"gitops{r}")
            fake.git_fault = FaultPlan(rate=args.rate, ref_update_rate=args.ref_update_rate, seed=r)
            f = run(Path(args.bin), env, fake, repo, jobs(capsules, pushes, f"acme/gitops{r}"))
            print(f"round {r + 1}: " + "; ".join(f.lines()))
            for key in ("runs", "succeeded", "requests", "git_data_calls", "commits", "other_writer_commits"):
                totals[key] += getattr(f, key)
            totals["seconds"] = max(totals["seconds"], f.seconds)
            totals["ref_update_faults"] += sum(f.ref_update_faults.values())
            faults.update(f.faults)
            totals["wrong"] += len(f.wrong_answers)
            totals["failed"] += len(f.failed_runs)
            problems += f.wrong_answers + f.failed_runs + [f"never committed: {p}" for p in f.unrecorded]
        fake.assert_clean()
    print()
    print(f"{args.rounds} rounds of {totals['runs'] // args.rounds} concurrent writers ({args.releases} releases, two exports "
          f"each; gate records on two branches, one push re-run); the slowest round took {totals['seconds']:.0f} s.\n")
    print("| runs | exited 0 | requests | faults injected | of which on the ref update | commits (another writer's) "
          "| wrong answers |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {totals['runs']} | {totals['succeeded']} | {totals['requests']} | {sum(faults.values())} "
          f"| {totals['ref_update_faults']} | {totals['commits']} ({totals['other_writer_commits']}) | {totals['wrong']} |")
    print()
    print("| fault | injected |")
    print("| --- | --- |")
    for kind, n in sorted(faults.items()):
        print(f"| {kind} | {n} |")
    for p in problems:
        print("PROBLEM", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
