"""What GitHub may answer a GitOps write besides "done", one fault at a time
(spec section 11): the other 422 wordings to the ref update, unknown outcomes
(5xx, resets) before and after the update is applied, a secondary rate limit,
failures of the content-addressed creates. Each must end with the record
committed exactly once and an exit code that says so."""

from __future__ import annotations

import json
import subprocess

import pytest

from harness.git_faults import REF_UPDATE_422, is_ref_update, reset, secondary_rate_limit, server_error, unprocessable
from test_gitops import GATE, cli, commit_count, gitops, record_gate  # noqa: F401 (fixtures)
from verify_support import SHA


def first(predicate, *faults):
    """The next calls matching ``predicate`` get ``faults``, in order; then none."""
    queue = list(faults)

    def decide(call):
        if queue and predicate(call):
            return queue.pop(0)
        return None
    return decide


def operation(name: str):
    return lambda call: call.operation == name


def assert_recorded_once(gitops, before: int, sha: str = SHA, branch: str = "production"):
    assert commit_count(gitops) == before + 1, "exactly one commit"
    merged = f"{GATE}/{branch}/merged/git-{sha}.yaml"
    shown = subprocess.run(["git", "--git-dir", str(gitops.path), "show", f"main:{merged}"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    subprocess.run(["git", "--git-dir", str(gitops.path), "fsck", "--strict", "--no-dangling"], check=True, capture_output=True)


FAULTS = {
    **{f"422 before: {w}": (is_ref_update, unprocessable(w)) for w in REF_UPDATE_422},
    "422 after: Reference update failed": (is_ref_update, unprocessable("Reference update failed", after=True)),
    "502 before the update": (is_ref_update, server_error(502)),
    "502 after the update": (is_ref_update, server_error(502, after=True)),
    "504 after the update": (is_ref_update, server_error(504, after=True)),
    "reset after the update": (is_ref_update, reset(after=True)),
    "secondary rate limit on the update": (is_ref_update, secondary_rate_limit()),
    "502 after creating the commit": (operation("git/create-commit"), server_error(502, after=True)),
    "reset after creating the tree": (operation("git/create-tree"), reset(after=True)),
    "secondary rate limit on the tree": (operation("git/create-tree"), secondary_rate_limit()),
    "503 reading the branch": (operation("git/get-ref"), server_error(503)),
}


@pytest.mark.parametrize("case", list(FAULTS))
def test_a_fault_on_the_write_still_records_the_release_once(case, gitops, cli, fake_github):
    predicate, fault = FAULTS[case]
    fake_github.git_fault = first(predicate, fault)
    before = commit_count(gitops)
    p = record_gate(cli, "--merged-at", "2026-11-20T10:30:00Z")
    assert p.returncode == 0, p
    assert [c.fault for c in fake_github.calls if c.fault] == [fault.kind], "the fault was injected"
    assert_recorded_once(gitops, before)
    report = json.loads(p.stdout)
    head = subprocess.run(["git", "--git-dir", str(gitops.path), "rev-parse", "main"], capture_output=True, text=True).stdout.strip()
    assert report["commit"] == head, "the run names the commit that landed"
    if is_ref_update is predicate and fault.status != 403:
        assert "reading the branch" in p.stderr, p.stderr
    fake_github.assert_clean()


def test_a_lost_answer_then_another_writer_on_top_is_still_one_record(gitops, cli, fake_github):
    """Our update landed but its answer was lost, and someone else committed on
    top before we read the branch: we plan again there and find the record."""
    fake_github.git_fault = first(is_ref_update, server_error(502, after=True))
    theirs = []
    original = fake_github.git.handle

    def handle(op, params, query, body, token):
        answer = original(op, params, query, body, token)
        if op == "git/update-ref" and not theirs:
            theirs.append(gitops.commit_files("main", {"apps/x.yaml": b"x: 1\n"}, "someone else"))
        return answer

    fake_github.git.handle = handle
    before = commit_count(gitops)
    p = record_gate(cli, "--merged-at", "2026-11-20T10:30:00Z")
    assert p.returncode == 0, p
    assert commit_count(gitops) == before + 2, "ours and theirs, nothing twice"
    report = json.loads(p.stdout)
    assert report["commit"] is None and report["kept"], report
    assert_recorded_once(gitops, before + 1)


def test_an_update_that_never_gets_an_answer_is_not_reported_as_done(gitops, cli, fake_github):
    """Every update refused: the run gives up, says so, and exits non-zero."""
    fake_github.git_fault = lambda call: unprocessable("Reference cannot be updated") if is_ref_update(call) else None
    before = commit_count(gitops)
    p = record_gate(cli, "--merged-at", "2026-11-20T10:30:00Z")
    assert p.returncode == 1, p
    assert "Reference cannot be updated" in p.stderr and "nothing was committed" in p.stderr, p.stderr
    assert commit_count(gitops) == before
