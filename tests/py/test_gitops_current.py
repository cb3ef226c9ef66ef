"""`current.yaml` of a gate branch says what the branch holds now (spec section
12): the newest push processed, by the push's time. A force-push back to an
earlier revision moves it back; a re-run of an older push does not."""

from __future__ import annotations

import json
import subprocess

import yaml

from test_gitops import GATE, cli, commit_count, gitops, record_gate  # noqa: F401 (fixtures)
from verify_support import OTHER_SHA, OTHER_TAG, SHA, TAG


def current(gitops, branch: str = "production") -> dict:
    return yaml.safe_load(subprocess.run(["git", "--git-dir", str(gitops.path), "show", f"main:{GATE}/{branch}/current.yaml"],
                                         capture_output=True, text=True, check=True).stdout)


def merged(gitops, tag: str, branch: str = "production") -> dict:
    return yaml.safe_load(subprocess.run(["git", "--git-dir", str(gitops.path), "show", f"main:{GATE}/{branch}/merged/{tag}.yaml"],
                                         capture_output=True, text=True, check=True).stdout)


def test_current_follows_a_force_push_back_and_ignores_reruns_of_older_pushes(gitops, cli):
    push_a, push_b, force_back = "2026-11-20T10:00:00Z", "2026-11-20T11:00:00Z", "2026-11-20T12:00:00Z"
    assert record_gate(cli, "--merged-at", push_a).returncode == 0
    assert record_gate(cli, "--merged-at", push_b, sha=OTHER_SHA).returncode == 0
    assert current(gitops) == {"revision": OTHER_SHA, "tag": OTHER_TAG, "mergedAt": push_b}

    p = record_gate(cli, "--merged-at", force_back)
    assert p.returncode == 0, p
    assert json.loads(p.stdout)["written"] == [f"{GATE}/production/current.yaml"]
    assert current(gitops) == {"revision": SHA, "tag": TAG, "mergedAt": force_back}, "the branch holds A again"
    assert merged(gitops, TAG)["mergedAt"] == push_a, "A's record keeps its first mergedAt"
    assert merged(gitops, OTHER_TAG)["mergedAt"] == push_b

    count = commit_count(gitops)
    for sha, at in ((OTHER_SHA, push_b), (SHA, push_a), (SHA, force_back)):
        p = record_gate(cli, "--merged-at", at, sha=sha)
        assert p.returncode == 0, p
        assert json.loads(p.stdout)["commit"] is None, f"a re-run of the push at {at} changes nothing"
    assert commit_count(gitops) == count
    assert current(gitops)["mergedAt"] == force_back
