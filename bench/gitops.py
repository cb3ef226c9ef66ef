#!/usr/bin/env python3
"""Git freight export: `export-freight` through the Git Data API against what
code-dot-org's workflows do today (clone the GitOps repository, copy the files,
commit, push). A report, not a test.

    cargo build --release
    .venv/bin/python bench/gitops.py [--bin target/release/release-capsule] [--releases 300]

Both write the same release into the same bare repository, which already holds
--releases earlier releases under the freight path (as a GitOps repository does
after months) and an apps/ tree. The export talks to the fake GitHub of the
tests (a Python server over git plumbing), so its wall time here is mostly that
server; what carries over to api.github.com is the number of requests, where
each costs a round trip (and writes count against GitHub's content-creation
limits). The clone's cost grows with the repository; the export reads only the
directories on its paths.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "py"))

from harness.fake_github import FakeGitHub  # noqa: E402
from harness.fake_git import git  # noqa: E402
from harness.registry import Registry  # noqa: E402
from verify_support import CREATED, SHA, SOURCE, TAG, app_image_layout, skopeo_push  # noqa: E402

FREIGHT = "warehouses/codeai/freight"


def seed(repo, releases: int, chart: Path) -> None:
    """One commit holding `releases` earlier releases and an apps/ tree, made with one index."""
    lines = []
    files = [(p.relative_to(chart).as_posix(), p.read_bytes()) for p in sorted(chart.rglob("*")) if p.is_file()]
    blobs = {rel: repo.out("hash-object", "-w", "--stdin", input=data) for rel, data in files}
    for i in range(releases):
        sha = f"{i:040x}"
        for rel, _ in files:
            lines.append(f"100644 {blobs[rel]}\t{FREIGHT}/git-{sha}/helm/{rel}")
    for i in range(500):
        blob = repo.out("hash-object", "-w", "--stdin", input=f"app {i}\n".encode()) if i < 5 else blob
        lines.append(f"100644 {blob}\tapps/codeai/deployments/d{i}/values.yaml")
    index = tempfile.mktemp()
    env = {"GIT_INDEX_FILE": index}
    parent = repo.head("main")
    git(repo.path, "read-tree", parent, env=env)
    git(repo.path, "update-index", "--index-info", input=("\n".join(lines) + "\n").encode(), env=env)
    tree = repo.out("write-tree", env=env)
    os.unlink(index)
    ident = {"GIT_AUTHOR_NAME": "seed", "GIT_AUTHOR_EMAIL": "s@x", "GIT_COMMITTER_NAME": "seed", "GIT_COMMITTER_EMAIL": "s@x"}
    commit = repo.out("commit-tree", tree, "-p", parent, "-m", "history", env=ident)
    git(repo.path, "update-ref", "refs/heads/main", commit, parent)


def clone_commit_push(bare: Path, work: Path, package: Path, sha: str) -> float:
    """What the workflows do today, timed: clone, copy into git-<sha>/ and current/, commit, push."""
    start = time.perf_counter()
    co = work / f"clone-{time.monotonic_ns()}"
    subprocess.run(["git", "clone", "--quiet", "--depth", "1", f"file://{bare}", str(co)], check=True)
    for d in (f"{FREIGHT}/git-{sha}/helm", f"{FREIGHT}/current/helm"):
        shutil.rmtree(co / d, ignore_errors=True)
        shutil.copytree(package, co / d)
        (co / d).parent.joinpath("freight.yaml").write_text(f'revision: "{sha}"\n')
    subprocess.run(["git", "-C", str(co), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(co), "-c", "user.name=bot", "-c", "user.email=b@x", "commit", "--quiet", "-m", "x"], check=True)
    subprocess.run(["git", "-C", str(co), "push", "--quiet", "origin", "HEAD:main"], check=True)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "release-capsule"))
    ap.add_argument("--releases", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    chart = ROOT / "examples" / "charts" / "hello"
    with tempfile.TemporaryDirectory() as tmp, Registry(access_log=False) as registry, FakeGitHub() as fake:
        work = Path(tmp)
        env = {"PATH": os.environ["PATH"], "HOME": tmp, "TMPDIR": tmp, "DOCKER_CONFIG": tmp,
               "GITHUB_API_URL": fake.url, "GITOPS_TOKEN": "bench"}
        image, capsule = f"{registry.host}/bench/app", f"{registry.host}/bench/app-release-capsule"
        image_digest = app_image_layout(work / "image", TAG)
        skopeo_push("skopeo", work / "image", TAG, f"{image}:{TAG}")
        subprocess.run([args.bin, "build", "--sha", SHA, "--image", image, "--image-digest", image_digest,
                        "--source-repository", SOURCE, "--package-path", str(chart), "--created", CREATED,
                        "--output", str(work / "capsule")], check=True, capture_output=True, env=env)
        skopeo_push("skopeo", work / "capsule", TAG, f"{capsule}:{TAG}")

        def export(repo_name: str) -> tuple[float, int, int]:
            calls = len(fake.calls)
            start = time.perf_counter()
            subprocess.run([args.bin, "export-freight", "--capsule", f"{capsule}:{TAG}", "--gitops-repository",
                            f"acme/{repo_name}", "--freight-path", FREIGHT], check=True, capture_output=True, env=env)
            elapsed = time.perf_counter() - start
            made = fake.calls[calls:]
            return elapsed, len(made), sum(c.method != "GET" for c in made)

        first, again, clones = [], [], []
        for i in range(args.rounds):
            repo = fake.git.create("acme", f"gitops{i}")
            seed(repo, args.releases, chart)
            first.append(export(f"gitops{i}"))
            again.append(export(f"gitops{i}"))
            peer = fake.git.create("acme", f"peer{i}")
            seed(peer, args.releases, chart)
            clones.append(clone_commit_push(peer.path, work, chart, SHA))
        fake.assert_clean()

    files = sum(1 for p in chart.rglob("*") if p.is_file())
    med = lambda xs: statistics.median(xs)  # noqa: E731
    print(f"\nA {files}-file chart into a repository holding {args.releases} earlier releases "
          f"({args.releases * files + 500} files); medians of {args.rounds} rounds.\n")
    print("| | wall time | requests | of which writes |")
    print("| --- | --- | --- | --- |")
    print(f"| export-freight, new release | {med([f[0] for f in first]) * 1000:.0f} ms | {first[0][1]} | {first[0][2]} |")
    print(f"| export-freight, already recorded | {med([a[0] for a in again]) * 1000:.0f} ms | {again[0][1]} | {again[0][2]} |")
    print(f"| git clone --depth 1 + copy + commit + push (file://) | {med(clones) * 1000:.0f} ms | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
