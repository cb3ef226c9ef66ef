"""Concurrent runs of one sha against the real registry (spec section 7,
"Concurrency"): two runs of different releases started together, for the
capsule tag and for the image tag; two runs of the same release. Whatever the
interleaving, exactly one run of different releases reports success, and it
is the run whose digest the tag names at the end. bench/race.py repeats this
at least 20 times per kind and reports the counts."""

from __future__ import annotations

import pytest

from race_support import race_pair

SHA = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e"


@pytest.mark.parametrize("kind", ["capsule", "image", "same"])
def test_concurrent_runs_leave_one_winner_that_the_tag_names(kind, registry, repo_name, bin_path, cli_env, tmp_path):
    pairs = [race_pair(bin_path, cli_env, registry.host, f"{repo_name}-{i}", SHA, kind, tmp_path / f"pair-{i}")
             for i in range(2)]
    for pair in pairs:
        assert pair.problems() == [], [r.stderr for r in pair.runs]
        assert pair.capsule_tag is not None
        if kind == "same":
            assert {r.report["digest"] for r in pair.runs} == {pair.capsule_tag}
        else:
            loser = next(r for r in pair.runs if not r.ok)
            assert pair.capsule_tag in loser.stderr or pair.image_tag in loser.stderr
