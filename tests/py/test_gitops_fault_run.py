"""The GitOps writer's fault run (gitops_fault_run.py says what it does and
what counts as a wrong answer): twelve concurrent writers, faults on every
kind of Git Data call, another writer in between. Every release and gate
record ends up committed exactly once, nothing is lost, and every exit code
tells the truth. bench/gitops_faults.py runs the same with more writers and
prints the figures the README quotes."""

from __future__ import annotations

import yaml

from gitops_fault_run import FREIGHT, GATE, git, jobs, run
from harness.git_faults import FaultPlan, ref_update_faults
from test_gitops import LATER, NAME, OWNER, gitops  # noqa: F401 (fixture)
from verify_support import CREATED, OTHER_SHA, SHA

THIRD_SHA = "9999888877776666555544443333222211110000"
LATEST = "2026-11-22T08:00:00Z"


def test_concurrent_writers_under_faults_record_every_release_exactly_once(world, gitops, fake_github, bin_path, cli_env):
    capsules = {}
    for sha, created in ((SHA, CREATED), (OTHER_SHA, LATER), (THIRD_SHA, LATEST)):
        digest = world.image_digest if sha == SHA else world.push_image_tag(f"git-{sha}")
        world.publish(sha=sha, image_digest=digest, created=created)
        capsules[sha] = f"{world.capsule}:git-{sha}"
    pushes = [("production", SHA, "2026-11-20T10:00:00Z"), ("production", OTHER_SHA, "2026-11-20T11:00:00Z"),
              ("production", THIRD_SHA, "2026-11-20T12:00:00Z"), ("production", SHA, "2026-11-20T10:00:00Z"),
              ("staging", OTHER_SHA, "2026-11-20T11:00:00Z"), ("staging", THIRD_SHA, "2026-11-20T12:00:00Z")]
    plan = FaultPlan(rate=0.12, ref_update_rate=0.5, seed=13)
    fake_github.git_fault = plan
    writers = jobs(capsules, pushes, f"{OWNER}/{NAME}")
    figures = run(bin_path, {**cli_env, "GITHUB_API_URL": fake_github.url}, fake_github, gitops, writers)
    print("\n".join(["", "GitOps fault run:", *figures.lines()]))

    assert figures.wrong_answers == [], figures.wrong_answers
    assert figures.failed_runs == [] and figures.unrecorded == [], (figures.failed_runs, figures.unrecorded)
    fake_github.assert_clean()
    # Faults of every kind were met, on the ref update too.
    assert {"5xx-before", "5xx-after", "reset-before", "reset-after", "rate-limit"} <= set(figures.faults), figures.faults
    assert set(figures.ref_update_faults) == {f.kind for f in ref_update_faults()}, figures.ref_update_faults
    # The end state is what the newest of everything says.
    show = lambda path: yaml.safe_load(git(gitops.path, "show", f"main:{path}").stdout)  # noqa: E731
    assert show(f"{FREIGHT}/current/freight.yaml")["revision"] == THIRD_SHA, "current/ holds the newest release"
    for branch in ("production", "staging"):
        assert show(f"{GATE}/{branch}/current.yaml") == {"revision": THIRD_SHA, "tag": f"git-{THIRD_SHA}",
                                                          "mergedAt": "2026-11-20T12:00:00Z"}
    assert show(f"{GATE}/production/merged/git-{SHA}.yaml")["mergedAt"] == "2026-11-20T10:00:00Z"
