#!/usr/bin/env python3
"""The pull-request preview's own cost: `release-capsule preview` on a `helm
create` chart with three environments, against the time its `helm template`
calls take. A report, not a test.

    cargo build --release
    .venv/bin/python bench/preview.py [--bin target/release/release-capsule] [--rounds 5]

Every environment is compared both ways (against the base capsule and against
its stage's rendered branch), so a run renders six times. Each `helm template`
call goes through a small wrapper that logs when it started and ended; the
calls' wall time is the union of those intervals (renders run a few at a
time), and the preview's own cost is the rest of the run: reading the values
and the rendered branches from GitHub, finding and verifying the base capsule
in the registry, merging, parsing, comparing, writing the report.

What carries over: the Helm here is the tests' stand-in (tests/py/tools/helm,
Helm v4's engine from helm-python-sdk, behind a Python start-up), not the
Helm v3 binary of the action image; GitHub is the tests' fake (a Python
server over git plumbing) and the registry a local docker-registry, where
api.github.com and GHCR each cost a network round trip per request.
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

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "py"))

from action_support import seed_image  # noqa: E402
from harness.fake_git import git  # noqa: E402
from harness.fake_github import FakeGitHub  # noqa: E402
from harness.registry import Registry  # noqa: E402
from preview_support import (  # noqa: E402
    APP_OWNER, APP_REPO, CREATED, ENV_VALUES, ENVIRONMENTS, GITOPS, HELM_STANDIN, NAMESPACE, deep_merge, flat_files, helm_env,
    helm_template, prepare_chart, render_path, values_paths,
)

# The renders run in an environment of their own (render.rs clears it), so
# the wrapper carries its paths in itself.
WRAPPER = """#!/bin/sh
start=$(date +%s%N)
'{helm}' "$@"
rc=$?
echo "$start $(date +%s%N)" >> '{log}'
exit $rc
"""


def union_ns(intervals: list[tuple[int, int]]) -> int:
    total, end = 0, 0
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "release-capsule"))
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    import helm_python

    with tempfile.TemporaryDirectory() as tmp, Registry(access_log=False) as registry, FakeGitHub() as fake:
        work = Path(tmp)
        with helm_python.Chart.create("demo", work):
            pass
        chart = work / "demo"
        prepare_chart(chart)
        base_chart = work / "released" / "demo"
        shutil.copytree(chart, base_chart)
        values = chart / "values.yaml"
        values.write_text(values.read_text().replace("replicaCount: 1", "replicaCount: 5"))

        app = fake.git.create(APP_OWNER, APP_REPO, files={"README.md": b"app\n"})
        base = app.head("main")
        git(app.path, "update-ref", "refs/heads/feature", base)
        head = app.commit_files("feature", {"CHANGELOG.md": b"change\n"}, "The change")
        image = f"{registry.host}/bench/app"
        base_digest = seed_image(registry, "bench/app", base)
        head_digest = seed_image(registry, "bench/app", head, created="2026-11-21T10:11:12Z")
        env = {"PATH": os.environ["PATH"], "HOME": tmp, "TMPDIR": tmp, "DOCKER_CONFIG": tmp, "GITHUB_API_URL": fake.url,
               "GITHUB_TOKEN": "bench", "GITOPS_TOKEN": "bench"}
        subprocess.run([args.bin, "publish", "--sha", base, "--image", image, "--source-repository",
                        f"https://github.com/{APP_OWNER}/{APP_REPO}", "--package-path", str(base_chart), "--created", CREATED],
                       check=True, capture_output=True, env=env)

        files = {}
        for name in ENVIRONMENTS:
            for path, part in zip(values_paths(name), ENV_VALUES[name]):
                files[path] = yaml.safe_dump(part).encode()
        gitops = fake.git.create(*GITOPS.split("/"), files=files)
        environments = []
        for name in ENVIRONMENTS:
            merged = deep_merge(*ENV_VALUES[name])
            manifest = helm_template(base_chart, name, merged, f"{image}@{base_digest}", work)
            gitops.commit_files(f"stage/{name}", {f"{render_path(name)}/{n}": b for n, b in flat_files(manifest).items()}, "Render")
            environments.append({"name": name, "releaseName": name, "namespace": NAMESPACE, "valuesFiles": values_paths(name),
                                 "rendered": {"branch": f"stage/{name}", "path": render_path(name)}})
        config = work / "preview.yaml"
        config.write_text(yaml.safe_dump({"schemaVersion": "release-capsule-preview/v1", "gitops": {"repository": GITOPS},
                                          "imageKey": "image", "environments": environments}))
        wrapper = work / "helm-timed"
        log = work / "helm.log"
        wrapper.write_text(WRAPPER.format(helm=HELM_STANDIN, log=log))
        wrapper.chmod(0o755)
        run_env = {**env, **helm_env(), "RELEASE_CAPSULE_HELM": str(wrapper)}

        totals, helms, calls = [], [], []
        for i in range(args.rounds + 1):  # the first is a warm-up
            log.write_text("")
            start = time.time_ns()
            proc = subprocess.run([args.bin, "preview", "--config", str(config), "--package-path", str(chart), "--sha", head,
                            "--image", image, "--image-digest", head_digest, "--repository", f"{APP_OWNER}/{APP_REPO}",
                            "--base", base, "--output", str(work / f"out-{i}"), "--json"],
                           capture_output=True, env=run_env)
            total = time.time_ns() - start
            if proc.returncode != 0:
                sys.exit(f"release-capsule preview failed:\n{proc.stderr}")
            intervals = [tuple(map(int, line.split())) for line in log.read_text().splitlines()]
            if i == 0:
                continue
            totals.append(total)
            helms.append(union_ns(intervals))
            calls.append(len(intervals))
        fake.assert_clean()

    med = statistics.median
    total, helm = med(totals), med(helms)
    own = total - helm
    print(f"\n`release-capsule preview`, a `helm create` chart, {len(ENVIRONMENTS)} environments, "
          f"{calls[0]} `helm template` calls per run; medians of {args.rounds} runs.\n")
    print("| | wall time |")
    print("| --- | --- |")
    print(f"| the whole preview | {total / 1e6:.0f} ms |")
    print(f"| its `helm template` calls (union of their intervals) | {helm / 1e6:.0f} ms |")
    print(f"| the preview's own cost (the rest) | {own / 1e6:.0f} ms |")
    print(f"\nratio, own cost / helm template calls: {own / helm:.2f} (target: at most 0.20)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
