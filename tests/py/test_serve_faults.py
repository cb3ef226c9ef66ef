"""`serve` behind a registry that fails in every way a registry fails (issue
13): never a 200 for a capsule that fails spec section 8, never a 422 for one
that passes, faults answered 502/503, and every answer right again as soon as
the faults stop, with no restart. The run is bench/serve_faults.py's, with
fewer requests; its figures are printed."""

from __future__ import annotations

import sys

from harness import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))

import serve_faults  # noqa: E402


def test_no_wrong_answer_under_registry_faults_and_none_cached(bin_path, registry, skopeo, tmp_path, capsys):
    figures = serve_faults.run(bin_path, registry, skopeo, tmp_path, requests=210)
    with capsys.disabled():
        print("\nserve under registry faults:\n  " + "\n  ".join(figures.lines()))
    assert figures.wrong == [], figures.wrong
    assert figures.wrong_after == [], figures.wrong_after
    kinds = set(figures.faults)
    assert {"503", "429", "502-html", "reset", "close", "cut", "stall"} <= kinds, figures.faults
    assert figures.answers[200] and figures.answers[422], "both verdicts were given under faults"
    assert figures.answers[502] + figures.answers[503] > 0, "faults showed as retryable answers"
    assert figures.deadline > 0, "a 30 s stall is answered 503 by the service's own deadline"
