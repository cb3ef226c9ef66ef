"""Kargo's `http` promotion step, as code-dot-org's Kustomize stage uses it
(../shared/consumers/capsule-kustomize/stage-staging.yaml), read from that file:
the request body its template makes, and its successExpression,
failureExpression and outputs evaluated on the answer.

How Kargo makes the body (akuity/kargo pkg/expressions/json_templates.go): the
`body` string is a template; `${{ quote({...}) }}` evaluates the map literal,
`quote` of a map is `"` + Go's json.Marshal of it + `"` (keys sorted, compact,
<, > and & escaped as \\u003c, \\u003e, \\u0026); the template's trailing newline
(the YAML block scalar) is set aside, the enclosing quotes are stripped because
the result is quoted, and the newline is put back. So the stage sends Go's
compact JSON of the map followed by "\\n".

Only what this one stage's template uses is evaluated: string keys, and values
that are `imageFrom(vars.X).Field`, `vars.X` or `outputs['step'].field`. A
template that uses anything else fails here loudly, which is the point: the
stage file is the compatibility contract.

What Kargo does with an answer (akuity/kargo pkg/promotion/runner/builtin/
http_requester.go; the engine in pkg/promotion/local_orchestrator.go and
pkg/controller/promotions), as ``HttpStep.outcome`` tells it. With both
expressions set, as the stages set them, this is the same from v1.3 to v1.11;
with one or neither set it is v1.8's (before v1.8 the missing expression was
the negation of the other, so nothing stayed Running):
- failureExpression true (checked first): the step Fails with a terminal error,
  and the Promotion fails at once: no retry, whatever ``retry`` says;
- else successExpression true: the step Succeeds;
- neither expression set: 2xx succeeds, anything else is a failure to retry;
- else (an expression is set and nothing matched): the step stays Running and
  is run again (after ``pollInterval``, default 30 s, from v1.11; every 5
  minutes before) until ``retry.timeout`` has passed since it started; then it
  is Errored and the Promotion fails;
- no answer at all (connection refused or reset, the step's ``timeout``): an
  error that is not terminal; it counts toward ``retry.errorThreshold``
  (default 1 for the http step: the first one fails the Promotion), and until
  then the step is run again with the controller's backoff.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

STAGE = Path(__file__).resolve().parents[3] / "shared" / "consumers" / "capsule-kustomize" / "stage-staging.yaml"

_VALUE = re.compile(
    r"""imageFrom\(vars\.(?P<image_var>\w+)\)\.(?P<image_field>\w+)"""
    r"""|outputs\['(?P<step>[\w-]+)'\]\.(?P<output>\w+)"""
    r"""|vars\.(?P<var>\w+)"""
)


@dataclass
class HttpStep:
    """The `http` step of the stage, with the stage's vars."""

    config: dict
    vars: dict[str, str]
    retry: dict | None = None

    @classmethod
    def load(cls, stage: Path = STAGE, alias: str = "verify-release") -> "HttpStep":
        doc = yaml.safe_load(stage.read_text())
        spec = doc["spec"]["promotionTemplate"]["spec"]
        variables = {v["name"]: v["value"] for v in spec.get("vars", [])}
        step = next(s for s in spec["steps"] if s.get("uses") == "http" and s.get("as") == alias)
        return cls(step["config"], variables, step.get("retry"))

    @property
    def error_threshold(self) -> int:
        """``retry.errorThreshold``; 0 or unset is the http step's default, 1."""
        return int((self.retry or {}).get("errorThreshold") or 1)

    @property
    def timeout(self) -> str | None:
        """``retry.timeout``: how long a Running step is run again; None is the step's default (none)."""
        return (self.retry or {}).get("timeout")

    def outcome(self, status: int, body: Any) -> str:
        """What Kargo makes of an answer: "failed" (terminal, the Promotion fails),
        "succeeded", "failed-retried" (no expressions, non-2xx) or "running" (run
        again until retry.timeout). Failure is checked before success, as Kargo does."""
        env = {"response": _Obj({"status": status, "body": body, "headers": {}})}
        success = _evaluate(self.config["successExpression"], env) if self.config.get("successExpression") else None
        failure = _evaluate(self.config["failureExpression"], env) if self.config.get("failureExpression") else None
        if failure:
            return "failed"
        if success:
            return "succeeded"
        if success is None and failure is None:
            return "succeeded" if 200 <= status < 300 else "failed-retried"
        return "running"

    def error_message(self, status: int, body: Any) -> str:
        """The message Kargo puts on a failed step: errorExpression's string, if any."""
        env = {"response": _Obj({"status": status, "body": body, "headers": {}})}
        message = _evaluate(self.config["errorExpression"], env) if self.config.get("errorExpression") else None
        suffix = f": {json.dumps(message)}" if isinstance(message, str) and message else ""
        return f"HTTP ({status}) response met failure criteria{suffix}"

    def body(self, images: dict[str, dict[str, str]], outputs: dict[str, dict[str, str]]) -> bytes:
        """The bytes Kargo sends. ``images`` is what imageFrom(repo) returns, by
        repo (RepoURL, Tag, Digest); ``outputs`` the earlier steps' outputs."""
        template: str = self.config["body"]
        m = re.fullmatch(r"\s*\$\{\{\s*quote\((?P<literal>.*)\)\s*\}\}(?P<tail>\s*)", template, re.S)
        assert m, f"the stage's body is no longer ${{{{ quote({{...}}) }}}}: {template!r}"

        def value(v: re.Match) -> str:
            if v.group("image_var"):
                repo = self.vars[v.group("image_var")]
                return json.dumps(images[repo][v.group("image_field")])
            if v.group("step"):
                return json.dumps(outputs[v.group("step")][v.group("output")])
            return json.dumps(self.vars[v.group("var")])

        as_json = _VALUE.sub(value, m.group("literal"))
        data = json.loads(as_json)  # fails if the template holds anything else
        text = go_json(data)
        # The template's trailing newline is put back after the quotes are stripped.
        return (text + ("\n" if m.group("tail").endswith("\n") else "")).encode()

    def judge(self, status: int, body: Any) -> tuple[bool, bool, dict[str, Any]]:
        """(success, failure, outputs) as the step computes them from a response."""
        env = {"response": _Obj({"status": status, "body": body, "headers": {}})}
        success = bool(_evaluate(self.config["successExpression"], env))
        failure = bool(_evaluate(self.config["failureExpression"], env))
        outputs = {o["name"]: _unwrap(_evaluate(o["fromExpression"], env)) for o in self.config.get("outputs", [])}
        return success, failure, outputs


def response_body(content_type: str, raw: bytes) -> Any:
    """``response.body`` as Kargo builds it (buildExprEnv): empty is ``{}``;
    application/json must parse (else the step is Errored); YAML types are
    parsed as YAML, text/plain is a string; any other type is parsed if it is
    valid JSON and is ``{}`` if not (an HTML error page from a proxy)."""
    media = content_type.split(";")[0].strip().lower()
    if not raw:
        return {}
    if media == "application/json":
        return json.loads(raw)  # an error here is Kargo's "failed to parse JSON response"
    if media in ("application/yaml", "text/yaml", "application/x-yaml"):
        return yaml.safe_load(raw)
    if media == "text/plain":
        return raw.decode()
    try:
        return json.loads(raw)
    except ValueError:
        return {}


def go_json(value: Any) -> str:
    """encoding/json.Marshal of maps, strings and lists: sorted keys, compact,
    HTML-safe escapes."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class _Obj:
    """expr-lang member access on decoded JSON: a missing member is nil."""

    def __init__(self, value: Any):
        self.value = value

    def __getattr__(self, name: str) -> "_Obj":
        v = self.value.get(name) if isinstance(self.value, dict) else None
        return _Obj(v)

    def __eq__(self, other: object) -> bool:
        return _unwrap(self) == _unwrap(other)

    def __ge__(self, other): return _unwrap(self) is not None and _unwrap(self) >= _unwrap(other)
    def __gt__(self, other): return _unwrap(self) is not None and _unwrap(self) > _unwrap(other)
    def __le__(self, other): return _unwrap(self) is not None and _unwrap(self) <= _unwrap(other)
    def __lt__(self, other): return _unwrap(self) is not None and _unwrap(self) < _unwrap(other)
    __hash__ = None


def _unwrap(v: Any) -> Any:
    return v.value if isinstance(v, _Obj) else v


def _evaluate(expression: str, env: dict) -> Any:
    """The operators these expressions use: ==, !=, >=, <=, >, <, &&, ||, !, true, false, nil."""
    allowed = re.compile(r"""^[\w\s.=!<>&|()'"0-9-]*$""")
    assert allowed.match(expression), f"unsupported expression {expression!r}"
    py = (expression.replace("&&", " and ").replace("||", " or ")
          .replace("true", "True").replace("false", "False").replace("nil", "None"))
    py = re.sub(r"!(?!=)", " not ", py)
    return _unwrap(eval(py, {"__builtins__": {}}, env))  # noqa: S307 (fixed grammar, checked above)
