"""Reading back what release-capsule commits to a GitOps repository: with git
itself (clone, log, diff), and as code-dot-org's Kargo stages read it
(../shared/consumers): their `yaml-parse` steps and the production stage's
validation expression, evaluated from the stage files themselves.

What Kargo does, as far as these stages use it:
- `yaml-parse` (akuity/kargo pkg/promotion/runner/builtin/yaml_parser.go)
  decodes the file with Go's YAML and evaluates each output's
  `fromExpression` (expr-lang) on the document: here, dotted paths.
- Step paths and the `copy` step's `inPath` are `${{ }}` expressions over
  `vars`, `imageFrom(repo)` (the Freight's image: Tag, Digest) and `outputs`.
  Only what these stages use is evaluated (string literals, +, ==, &&, the
  ternary); anything else fails loudly.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

CONSUMERS = Path(__file__).resolve().parents[3] / "shared" / "consumers"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def clone(bare: Path, dest: Path, branch: str = "main") -> Path:
    subprocess.run(["git", "clone", "--quiet", "--branch", branch, str(bare), str(dest)], check=True, capture_output=True)
    return dest


def log(checkout: Path) -> list[str]:
    return git(checkout, "log", "--format=%H").split()


def stage(name: str) -> tuple[dict[str, str], list[dict]]:
    """A stage's vars (stage-level and template-level) and its steps."""
    doc = yaml.safe_load((CONSUMERS / name).read_text())
    spec = doc["spec"]
    template = spec["promotionTemplate"]["spec"]
    variables = {v["name"]: v["value"] for v in spec.get("vars", []) + template.get("vars", [])}
    return variables, template["steps"]


def step(steps: list[dict], uses: str, alias: str | None = None) -> dict:
    return next(s for s in steps if s["uses"] == uses and (alias is None or s.get("as") == alias))


class _Env(dict):
    """`outputs.x`, `outputs['x']` and `.field` access on plain dicts."""

    def __getattr__(self, name: str) -> Any:
        value = self.get(name)
        return _Env(value) if isinstance(value, dict) else value

    def __getitem__(self, name: str) -> Any:
        return self.__getattr__(name)


def evaluate(template: str, variables: dict[str, str], images: dict[str, dict[str, str]],
             outputs: dict[str, dict] | None = None) -> Any:
    """A step value: plain text, or one ``${{ expr }}``."""
    m = re.fullmatch(r"\s*\$\{\{(?P<expr>.*)\}\}\s*", template, re.S)
    if not m:
        return template
    expr = m.group("expr")
    expr = re.sub(r"imageFrom\(vars\.(\w+)\)\.(\w+)", lambda x: repr(images[variables[x.group(1)]][x.group(2)]), expr)
    expr = re.sub(r"vars\.(\w+)", lambda x: repr(variables[x.group(1)]), expr)
    ternary = re.fullmatch(r"(?P<cond>.*)\?(?P<yes>\s*'[^']*'\s*):(?P<no>\s*'[^']*'\s*)", expr, re.S)
    if ternary:
        expr = f"({ternary.group('yes')}) if ({ternary.group('cond')}) else ({ternary.group('no')})"
    expr = expr.replace("&&", " and ").replace("||", " or ")
    assert re.fullmatch(r"""[\w\s.'"+=()\[\]/:@,-]*""", expr), f"unsupported expression {expr!r}"
    return eval(expr, {"__builtins__": {}}, {"outputs": _Env(outputs or {})})  # noqa: S307 (checked above)


def yaml_parse(config: dict, root: Path, variables: dict[str, str], images: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Kargo's yaml-parse: the outputs of ``config`` on the file it names,
    ``./`` being ``root`` (the promotion's work directory)."""
    path = evaluate(config["path"], variables, images)
    assert path.startswith("./"), path
    doc = yaml.safe_load((root / path[2:]).read_text())
    out = {}
    for o in config["outputs"]:
        value: Any = doc
        for key in o["fromExpression"].split("."):
            assert re.fullmatch(r"\w+", key), o["fromExpression"]
            value = value.get(key) if isinstance(value, dict) else None
        out[o["name"]] = value
    return out
