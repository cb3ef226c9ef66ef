"""Faults for the Git Data side of the fake GitHub: what GitHub does to a
writer on a bad day, injected into real requests.

``FakeGitHub.git_fault = fn(call) -> Fault | None`` is asked once per Git Data
call, after the request has been validated against its schema (so a faulted
request is still checked). A fault either answers instead of the fake
(``after=False``: nothing was applied) or replaces the answer of a request the
fake did apply (``after=True``: the write happened, the writer is not told).
A ``status`` of 0 is a connection reset (RST, no answer at all).

The kinds, with GitHub's own wordings:

- ``5xx``: 502/503/504 with GitHub's error body, before or after applying;
- ``reset``: the connection is reset, before or after applying;
- ``rate-limit``: 403 "You have exceeded a secondary rate limit" with
  ``Retry-After: 1`` (GitHub did nothing);
- ``422``: the three wordings GitHub gives a ref update under concurrent
  writers, before applying, and "Reference update failed" after applying too.

``FaultPlan`` decides from a seeded ``random.Random`` which call gets which
fault, with at most ``max_in_a_row`` consecutive faults for the same request
of the same writer (token, method, path): GitHub's faults are transient, and
a writer retries a request a bounded number of times.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field

REF_UPDATE_422 = ("Update is not a fast forward", "Reference cannot be updated", "Reference update failed")
DOCS = "https://docs.github.com/rest/git/refs#update-a-reference"


@dataclass(frozen=True)
class Fault:
    kind: str  # for counting: "5xx-before", "reset-after", "422-before: Reference cannot be updated", ...
    status: int  # 0: reset the connection
    body: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    after: bool = False

    def answer(self) -> tuple[int, dict, dict[str, str]]:
        return self.status, self.body, dict(self.headers)


def server_error(status: int = 502, *, after: bool = False) -> Fault:
    when = "after" if after else "before"
    body = {"message": "Server Error"} if status != 504 else {"message": "We couldn't respond to your request in time."}
    return Fault(f"5xx-{when}", status, body, after=after)


def reset(*, after: bool = False) -> Fault:
    return Fault(f"reset-{'after' if after else 'before'}", 0, after=after)


def secondary_rate_limit(retry_after: str = "1") -> Fault:
    return Fault("rate-limit", 403, {
        "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                   "If you reach out to GitHub Support for help, please include the request ID.",
        "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
        "status": "403",
    }, {"Retry-After": retry_after})


def unprocessable(wording: str, *, after: bool = False) -> Fault:
    return Fault(f"422-{'after' if after else 'before'}: {wording}", 422,
                 {"message": wording, "documentation_url": DOCS, "status": "422"}, after=after)


def is_ref_update(call) -> bool:
    return call.operation == "git/update-ref"


def faults_for(call) -> list[Fault]:
    """Every fault that may hit ``call``: a read is only ever refused or cut
    (applying a read changes nothing), a write also after it was applied."""
    kinds = [server_error(502), server_error(503), reset(), secondary_rate_limit()]
    if call.method != "GET":
        kinds += [server_error(502, after=True), server_error(504, after=True), reset(after=True)]
    if is_ref_update(call):
        kinds += [unprocessable(w) for w in REF_UPDATE_422]
        kinds += [unprocessable("Reference update failed", after=True)]
    return kinds


def ref_update_faults() -> list[Fault]:
    """One of each fault a ref update can meet."""
    return [f for f in faults_for(_RefUpdate()) if f.kind not in ("5xx-before",)] + [server_error(503)]


class _RefUpdate:
    method, operation = "PATCH", "git/update-ref"


class FaultPlan:
    """``FaultPlan(rate=0.2, seed=1)``: each Git Data call gets a fault with
    probability ``rate`` (``ref_update_rate`` for ref updates, whose faults
    are the interesting ones), chosen uniformly among ``faults_for(call)``.
    The first ref updates meet ``ref_update_faults()`` one by one, so that a
    run sees each of them whatever the dice say."""

    def __init__(self, rate: float, seed: int = 0, *, ref_update_rate: float | None = None,
                 max_in_a_row: int = 2) -> None:
        self.rate = rate
        self.ref_update_rate = rate if ref_update_rate is None else ref_update_rate
        self.max_in_a_row = max_in_a_row
        self.rng = random.Random(seed)
        self.injected: Counter[str] = Counter()
        self.calls = 0
        self.enabled = True
        self._in_a_row: Counter[tuple[str, str, str]] = Counter()
        self._to_cover = ref_update_faults()
        self._lock = threading.Lock()

    def __call__(self, call) -> Fault | None:
        key = (call.authorization or "", call.method, call.path)
        with self._lock:
            self.calls += 1
            covering = is_ref_update(call) and bool(self._to_cover)
            rate = 1.0 if covering else self.ref_update_rate if is_ref_update(call) else self.rate
            roll = self.rng.random()
            if not self.enabled or roll >= rate or self._in_a_row[key] >= self.max_in_a_row:
                self._in_a_row[key] = 0
                return None
            fault = self._to_cover.pop(0) if covering else self.rng.choice(faults_for(call))
            self._in_a_row[key] += 1
            self.injected[fault.kind] += 1
            return fault

    @property
    def total(self) -> int:
        return sum(self.injected.values())
