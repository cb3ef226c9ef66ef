#!/usr/bin/env python3
"""Concurrent publishes of one sha against the real registry: a report, not a test.

    cargo build --release
    .venv/bin/python bench/race.py [--bin target/release/release-capsule] [--pairs 20]

For each kind (see tests/py/race_support.py: two releases racing for the
capsule tag, two images racing for the image tag, the same release twice) it
starts --pairs pairs of `publish` processes at the same instant, each pair in a
fresh repository, and counts:

- pairs where both runs reported success, or none did (must be 0 for
  different releases);
- pairs whose winner is not the run whose digest the tag names (must be 0);
- failed runs that did not name the digest the tag holds (must be 0);
- pairs that really raced: both runs PUT the tag (seen by a proxy in front of
  the registry), as opposed to one run finding the other's tag at its
  re-check;
- for the same release: pairs where one run reported published=true (the run
  whose own PUT made the tag, src/commands/publish/claim.rs), and pairs where
  none did (both overlapped; never two: that would be a violation).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "py"))

from harness.fault_proxy import FaultProxy  # noqa: E402
from harness.registry import Registry  # noqa: E402

from race_support import KINDS, clean_env, race_pair  # noqa: E402

SHA = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "release-capsule"))
    ap.add_argument("--pairs", type=int, default=20)
    args = ap.parse_args()
    binary = Path(args.bin)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Registry() as registry, FaultProxy(registry.host) as proxy:
        env = clean_env(Path(tmp) / "home")
        for kind in KINDS:
            counts = {"pairs": 0, "runs": 0, "successes": 0, "both_pushed_the_tag": 0, "violations": 0,
                      "one_published": 0, "none_published": 0}
            details = []
            for i in range(args.pairs):
                proxy.reset()
                pair = race_pair(binary, env, proxy.host, f"race/{kind}-{i}", SHA, kind, Path(tmp) / f"{kind}-{i}")
                tag_puts = [e for e in proxy.log if e.method == "PUT" and e.path.endswith(f"/manifests/git-{SHA}")
                            and ("release-capsule" in e.path) == (kind != "image")]
                counts["pairs"] += 1
                counts["runs"] += len(pair.runs)
                counts["successes"] += pair.successes
                counts["both_pushed_the_tag"] += len(tag_puts) >= 2
                counts["one_published"] += pair.claimed("published") == 1
                counts["none_published"] += pair.claimed("published") == 0
                problems = pair.problems()
                counts["violations"] += bool(problems)
                details += [f"{kind} pair {i}: {p}" for p in problems]
            rows.append((kind, counts))
            for d in details:
                print("VIOLATION", d)
    print()
    print("| kind | pairs | runs | runs that succeeded | pairs where both PUT the tag | pairs with one / no `published=true` "
          "| pairs breaking the rule |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for kind, c in rows:
        print(f"| {kind} | {c['pairs']} | {c['runs']} | {c['successes']} | {c['both_pushed_the_tag']} "
              f"| {c['one_published']} / {c['none_published']} | {c['violations']} |")
    return 1 if any(c["violations"] for _, c in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
