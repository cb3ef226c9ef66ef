"""A fake GitHub REST API for the reporting side of release-capsule.

Point the binary at it with ``GITHUB_API_URL=fake.url``. It implements the
three operations of ../shared/github-api/operations.json:

- ``POST  /repos/{owner}/{repo}/check-runs``               checks/create (201)
- ``PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}`` checks/update (200)
- ``POST  /repos/{owner}/{repo}/statuses/{sha}``            repos/create-commit-status (201)

plus ``GET /repos/{owner}/{repo}/check-runs/{id}`` to read one back. Request
bodies are validated against GitHub's own request schemas (JSON Schema 2020-12,
with ``date-time`` checked); a failure answers 422 like GitHub and is kept in
``schema_errors`` so a test can assert the binary never sent a bad body.
Responses are built to satisfy the response schemas (test_harness.py checks).

Scriptable failures (attributes, change them at any time):

- ``mode = "forbidden"``: every write is 403 "Resource not accessible by
  integration" (the read-only GITHUB_TOKEN of a fork's pull request).
- ``rate_limit_first_n = N``: the next N writes get 429, ``Retry-After: 1``,
  ``x-ratelimit-remaining: 0`` (primary rate limit).
- ``secondary_rate_limit_first_n = N``: the next N writes get 403 "You have
  exceeded a secondary rate limit" with ``Retry-After: 1``.
- ``fail_next(status, ...)``: queue arbitrary answers (e.g. 502) for writes.
- ``hold = fn(call) -> seconds``: wait that long before answering (and
  applying) a request, as a slow GitHub would; ``call.body`` is not parsed yet,
  ``call.raw_body`` is.
- ``git_fault = fn(call) -> harness.git_faults.Fault | None``: a fault for a
  Git Data call, decided after its body was validated: answered instead of
  the fake, or after the fake applied the request (see harness.git_faults).

Refused writes are recorded in ``calls`` but create nothing.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import socket
import struct
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from . import BackgroundServer, QuietHandler
from .fake_checks import ChecksAndStatuses
from .fake_git import GitRepos
from .github_schemas import (  # noqa: F401 (re-exported for the tests)
    DEFAULT_OPERATIONS, DOCS, GIT_OPERATIONS, PREVIEW_OPERATIONS, SHA_RE, load_operations, validator,
)


@dataclass
class Call:
    """One request the fake received."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # keys lower-cased
    body: Any  # parsed JSON, or None (empty or unparsable; see raw_body)
    raw_body: bytes
    operation: str | None  # "checks/create", ... or None for unknown routes
    status: int = 0  # what the fake answered
    time: float = field(default_factory=time.time)
    held: bool = False  # answered only after ``FakeGitHub.hold`` said to wait
    fault: str | None = None  # the kind of fault ``FakeGitHub.git_fault`` injected

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


@dataclass
class _Route:
    operation: str
    method: str
    pattern: re.Pattern


# Parameters that may hold slashes: a ref ("heads/stage/staging"), a
# contents path (empty for the repository root) and compare's base...head.
_PARAM_PATTERNS = {"ref": ".+", "path": ".*", "basehead": ".+"}


def _route_pattern(path_template: str) -> re.Pattern:
    # "/repos/{owner}/{repo}/check-runs/{check_run_id}" -> named groups.
    regex = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m.group(1)}>{_PARAM_PATTERNS.get(m.group(1), '[^/]+')})",
                   path_template)
    return re.compile(f"^{regex}$")


class _GitHubHandler(QuietHandler):
    server_version = "GitHub.com"  # what api.github.com answers in Server

    def _handle(self) -> None:
        fake: FakeGitHub = self.server.owner
        split = urlsplit(self.path)
        raw = self.read_body() if self.command in ("POST", "PATCH", "PUT", "DELETE") else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        call = Call(self.command, split.path, split.query, headers, None, raw, None)
        with fake._lock:
            fake.calls.append(call)
        hold = fake.hold(call) if fake.hold is not None else 0
        if hold:
            # A slow GitHub: the request has arrived but is not answered (or
            # applied) yet. A client that gives up meanwhile sees nothing.
            call.held = True
            time.sleep(hold)
        try:
            status, body, extra_headers = fake._dispatch(self.command, split.path, headers, raw, call)
        except Exception as e:  # a harness bug must show up, not hang the client
            status, body, extra_headers = 500, {"message": f"fake GitHub crashed: {e!r}"}, {}
        call.status = status
        if status == 0:  # an injected reset: RST instead of an answer
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            return
        out_headers = {
            "X-GitHub-Api-Version-Selected": "2022-11-28",
            "X-GitHub-Request-Id": f"FAKE:{id(call):x}",
            **extra_headers,
        }
        payload = json.dumps(body).encode()
        self.send_bytes(status, payload, "application/json; charset=utf-8", out_headers,
                        head=self.command == "HEAD")

    do_GET = do_HEAD = do_POST = do_PATCH = do_PUT = do_DELETE = _handle


class FakeGitHub(ChecksAndStatuses, BackgroundServer):
    """See the module docstring. Attributes to read in tests:

    - ``calls``: list of Call, every request in arrival order.
    - ``schema_errors``: list of dicts {operation, kind, message, body}; kind is
      "schema" (request schema), "json" (unparsable body) or "semantic"
      (a rule GitHub enforces beyond the schema).
    - ``check_runs()``, ``statuses()``: what was created (see there).
    - ``assert_clean()``: no schema errors, no 401/404 answers.
    """

    handler_class = _GitHubHandler

    def __init__(
        self,
        *,
        operations_path: str | Path = DEFAULT_OPERATIONS,
        git_operations_path: str | Path | None = GIT_OPERATIONS,
        preview_operations_path: str | Path | None = PREVIEW_OPERATIONS,
        mode: str = "ok",
        rate_limit_first_n: int = 0,
        secondary_rate_limit_first_n: int = 0,
        expected_token: str | None = None,
        require_user_agent: bool = True,
    ) -> None:
        self.operations = load_operations(operations_path)
        self.git_operations = set()
        if git_operations_path is not None:
            git_ops = load_operations(git_operations_path)
            self.git_operations = set(git_ops)
            self.operations.update(git_ops)
        if preview_operations_path is not None:
            # Served from the same git repositories as the Git Data operations.
            preview_ops = load_operations(preview_operations_path)
            self.git_operations |= set(preview_ops)
            self.operations.update(preview_ops)
        self.request_validators = {
            op: validator(spec["request_schema"]) for op, spec in self.operations.items()
            if spec["request_schema"] is not None
        }
        self.response_validators = {
            op: validator(spec["response_schema"]) for op, spec in self.operations.items()
        }
        self.routes = [
            _Route(op, spec["method"], _route_pattern(spec["path"]))
            for op, spec in self.operations.items()
        ]
        # Not one of the three operations, but handy for tests and harmless.
        self.routes.append(
            _Route("checks/get", "GET", _route_pattern("/repos/{owner}/{repo}/check-runs/{check_run_id}"))
        )
        self.mode = mode
        self.rate_limit_first_n = rate_limit_first_n
        self.secondary_rate_limit_first_n = secondary_rate_limit_first_n
        self.expected_token = expected_token
        self.hold: Callable[[Call], float] | None = None
        self.git_fault: Callable[[Call], Any] | None = None
        # Real GitHub rejects requests without a User-Agent (403).
        self.require_user_agent = require_user_agent
        self._lock = threading.Lock()
        self._ids = itertools.count(30_000_000_001)  # real ids are past 2^32 too: catches i32/u32 ids
        self._scripted: deque[tuple[int, dict, dict[str, str]]] = deque()
        self.calls: list[Call] = []
        self.schema_errors: list[dict[str, Any]] = []
        self._check_runs: dict[int, dict[str, Any]] = {}
        self._check_run_meta: dict[int, dict[str, Any]] = {}
        self._statuses: list[dict[str, Any]] = []
        self.response_errors: list[dict[str, Any]] = []
        self._git_root = tempfile.TemporaryDirectory(prefix="fake-github-git-")
        # GitOps repositories, as real bare repositories: see harness.fake_git.
        self.git = GitRepos(Path(self._git_root.name), lambda: self.url)
        super().__init__()

    # -- scripting ---------------------------------------------------------------

    def fail_next(
        self, status: int, body: dict | None = None, headers: dict[str, str] | None = None,
        count: int = 1,
    ) -> None:
        """Answer the next ``count`` writes with ``status`` (after mode checks)."""
        body = body or {"message": f"scripted failure {status}", "documentation_url": DOCS}
        with self._lock:
            for _ in range(count):
                self._scripted.append((status, body, dict(headers or {})))

    # -- reading results -------------------------------------------------------

    def writes(self) -> list[Call]:
        return [c for c in self.calls if c.method in ("POST", "PATCH")]

    def close(self) -> None:
        super().close()
        self._git_root.cleanup()

    def assert_clean(self) -> None:
        """Fail if any body was invalid or any call was unauthenticated/unrouted."""
        assert not self.schema_errors, f"invalid GitHub API requests: {self.schema_errors}"
        assert not self.response_errors, f"the fake answered outside GitHub's schemas: {self.response_errors}"
        bad = [(c.method, c.path, c.status) for c in self.calls if c.status in (401, 404)]
        assert not bad, f"GitHub API calls answered 401/404: {bad}"

    # -- request handling (called from handler threads) ------------------------

    def _match(self, method: str, path: str) -> tuple[str | None, dict[str, str], bool]:
        """(operation, path params, path known for another method)."""
        known_path = False
        for route in self.routes:
            m = route.pattern.match(path)
            if m:
                known_path = True
                if route.method == method:
                    return route.operation, m.groupdict(), True
        return None, {}, known_path

    def _dispatch(self, method: str, path: str, headers: dict[str, str], raw: bytes,
                  call: Call) -> tuple[int, Any, dict[str, str]]:
        op, params, known_path = self._match(method, path)
        call.operation = op
        try:
            body = json.loads(raw) if raw else None
            call.body = body
        except ValueError as e:
            body, json_error = None, e
        else:
            json_error = None
        if op is None:
            if known_path:
                return 405, {"message": "Method Not Allowed", "documentation_url": DOCS}, {}
            return 404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}, {}

        if self.require_user_agent and not headers.get("user-agent"):
            return 403, {
                "message": "Request forbidden by administrative rules. "
                           "Please make sure your request has a User-Agent header "
                           "(https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). "
                           "Check https://developer.github.com for other possible causes.",
            }, {}
        auth = headers.get("authorization", "")
        m = re.match(r"^(?:Bearer|token)\s+(\S+)$", auth, re.IGNORECASE)
        if not m or (self.expected_token is not None and m.group(1) != self.expected_token):
            message = "Requires authentication" if not auth else "Bad credentials"
            return 401, {"message": message, "documentation_url": DOCS, "status": "401"}, {}

        if op == "checks/get":
            with self._lock:
                run = self._check_runs.get(_int(params["check_run_id"]))
                if run is None or not self._same_repo(run["id"], params):
                    return 404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}, {}
                return 200, copy.deepcopy(run), self._rate_headers()

        if op in self.git_operations:
            return self._dispatch_git(op, params, body, json_error, m.group(1), call)

        refused = self._refusal()
        if refused:
            return refused

        if json_error is not None:
            self._schema_error(op, "json", f"body is not JSON: {json_error}", raw)
            return 400, {"message": "Problems parsing JSON", "documentation_url": DOCS, "status": "400"}, {}
        docs = self.operations[op]["docs_url"]
        errors = sorted(self.request_validators[op].iter_errors(body), key=lambda e: list(e.path))
        if errors:
            messages = [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors]
            self._schema_error(op, "schema", "; ".join(messages), body)
            return 422, _invalid(messages, docs), {}
        problem = self._semantic_problem(op, body, params)
        if problem:
            status, message = problem
            self._schema_error(op, "semantic", message, body)
            return status, {"message": message, "documentation_url": docs, "status": str(status)}, {}

        with self._lock:
            if op == "checks/create":
                return 201, self._create_check_run(body, params), self._rate_headers()
            if op == "checks/update":
                run_id = _int(params["check_run_id"])
                if run_id not in self._check_runs or not self._same_repo(run_id, params):
                    return 404, {"message": "Not Found", "documentation_url": docs, "status": "404"}, {}
                return 200, self._update_check_run(run_id, body), self._rate_headers()
            return 201, self._create_status(body, params), self._rate_headers()

    def _dispatch_git(self, op: str, params: dict[str, str], body: Any, json_error: Exception | None,
                      token: str, call: Call) -> tuple[int, Any, dict[str, str]]:
        """The Git Data operations: reads are never refused by the scripted
        write failures; bodies are validated like every other write."""
        if call.method != "GET":
            refused = self._refusal()
            if refused:
                return refused
        spec = self.operations[op]
        if spec["request_schema"] is not None:
            if json_error is not None or body is None:
                self._schema_error(op, "json", f"body is not JSON: {json_error}", call.raw_body)
                return 400, {"message": "Problems parsing JSON", "documentation_url": DOCS, "status": "400"}, {}
            errors = sorted(self.request_validators[op].iter_errors(body), key=lambda e: list(e.path))
            if errors:
                messages = [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors]
                self._schema_error(op, "schema", "; ".join(messages), body)
                return 422, _invalid(messages, spec["docs_url"]), {}
        fault = self.git_fault(call) if self.git_fault is not None else None
        if fault is not None and not fault.after:
            call.fault = fault.kind
            return fault.answer()
        status, answer = self.git.handle(op, params, call.query, body, token)
        if status == spec["response_status"]:
            problems = [e.message for e in self.response_validators[op].iter_errors(answer)]
            if problems:
                with self._lock:
                    self.response_errors.append({"operation": op, "problems": problems[:5]})
        if fault is not None:
            call.fault = fault.kind
            return fault.answer()
        return status, answer, self._rate_headers()

    def _refusal(self) -> tuple[int, dict, dict[str, str]] | None:
        """Mode, rate limits and scripted failures for a write, in that order."""
        reset = str(int(time.time()) + 1)
        with self._lock:
            if self.mode == "forbidden":
                return 403, {
                    "message": "Resource not accessible by integration",
                    "documentation_url": DOCS,
                    "status": "403",
                }, {}
            if self.mode != "ok":
                raise ValueError(f"unknown FakeGitHub mode {self.mode!r}")
            if self.rate_limit_first_n > 0:
                self.rate_limit_first_n -= 1
                return 429, {
                    "message": "API rate limit exceeded for installation.",
                    "documentation_url": "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api",
                    "status": "429",
                }, {
                    "Retry-After": "1",
                    "x-ratelimit-limit": "5000",
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-used": "5000",
                    "x-ratelimit-reset": reset,
                    "x-ratelimit-resource": "core",
                }
            if self.secondary_rate_limit_first_n > 0:
                self.secondary_rate_limit_first_n -= 1
                return 403, {
                    "message": "You have exceeded a secondary rate limit. Please wait a few "
                               "minutes before you try again. If you reach out to GitHub "
                               "Support for help, please include the request ID.",
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
                    "status": "403",
                }, {"Retry-After": "1"}
            if self._scripted:
                return self._scripted.popleft()
        return None

    def _semantic_problem(self, op: str, body: dict, params: dict[str, str]) -> tuple[int, str] | None:
        """Rules GitHub enforces that the schema does not express."""
        if op == "checks/create" and not SHA_RE.match(body.get("head_sha", "")):
            return 422, f"No commit found for SHA: {body.get('head_sha')}"
        if op == "checks/create" and "completed_at" in body and "conclusion" not in body:
            # The docs: conclusion is "Required if you provide completed_at".
            return 422, "Invalid request.\n\nconclusion is required when completed_at is given."
        if op in ("checks/create", "checks/update") and body.get("conclusion") == "stale":
            # The docs: "You cannot change a check run conclusion to stale,
            # only GitHub can set this." (And the response enum lacks it.)
            return 422, "Invalid request.\n\nconclusion 'stale' can only be set by GitHub."
        if op == "repos/create-commit-status":
            if not SHA_RE.match(params["sha"]):
                return 422, f"No commit found for SHA: {params['sha']}"
            if len(body.get("description") or "") > 140:
                return 422, "Validation Failed: description is too long (maximum is 140 characters)"
        return None

    def _schema_error(self, op: str, kind: str, message: str, body: Any) -> None:
        with self._lock:
            self.schema_errors.append({"operation": op, "kind": kind, "message": message, "body": body})

    def _rate_headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "4999",
            "x-ratelimit-used": "1",
            "x-ratelimit-reset": str(int(time.time()) + 3600),
            "x-ratelimit-resource": "core",
        }


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1


def _invalid(messages: list[str], docs: str) -> dict:
    return {
        "message": "Invalid request.\n\n" + "\n".join(messages),
        "documentation_url": docs,
        "status": "422",
    }
