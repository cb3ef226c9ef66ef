"""GitHub's REST operations as JSON Schema (../shared/github-api/*.json), for the
fake GitHub: where the files are, and validators that really check the
``date-time`` and ``uri`` formats."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker

from . import SHARED_DIR

DEFAULT_OPERATIONS = SHARED_DIR / "github-api" / "operations.json"
GIT_OPERATIONS = SHARED_DIR / "github-api" / "operations-git.json"
# The preview's reads (compare-commits), in a file of their own.
PREVIEW_OPERATIONS = SHARED_DIR / "github-api" / "operations-preview.json"
DOCS = "https://docs.github.com/rest"
SHA_RE = re.compile(r"^[0-9a-fA-F]{40}$")

# RFC 3339 date-time. jsonschema only checks "date-time" when the optional
# rfc3339-validator package is installed, and silently passes otherwise; a
# local checker keeps the dependency list short and the check real.
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)

FORMAT_CHECKER = FormatChecker(formats=())


@FORMAT_CHECKER.checks("date-time", raises=ValueError)
def _check_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True  # format only constrains strings
    if not _RFC3339.match(value):
        return False
    datetime.fromisoformat(value.replace("z", "Z").replace("t", "T").replace("Z", "+00:00"))
    return True


@FORMAT_CHECKER.checks("uri")
def _check_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme) and bool(parts.netloc or parts.path)


def load_operations(path: str | Path = DEFAULT_OPERATIONS) -> dict[str, dict[str, Any]]:
    """operations.json's ``operations`` (id -> method, path, schemas...)."""
    with open(path) as f:
        return json.load(f)["operations"]


def validator(schema: dict) -> Draft202012Validator:
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FORMAT_CHECKER)
