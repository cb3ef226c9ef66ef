"""What the GitHub runner does around a container action step, for the tests
that play the runner: how it names input variables, how it parses the
GITHUB_OUTPUT file, plus checks and fixtures the action tests share
(test_action.py, test_runner_sandbox.py)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

from harness.registry import OCI_MANIFEST, sha256_digest

IMAGE_CREATED = "2026-11-20T10:11:12Z"


def input_var(name: str) -> str:
    """What the runner names an input's variable (ActionRunner: upper-case, ' ' -> '_')."""
    return "INPUT_" + name.replace(" ", "_").upper()


def _read_line(text: str, i: int):
    """The runner's ReadLine: (line, next index, newline) or (None, i, None) at the end."""
    if i >= len(text):
        return None, i, None
    j = text.find("\n", i)
    if j < 0:
        return text[i:], len(text), None
    if j > i and text[j - 1] == "\r":
        return text[i:j - 1], j + 1, "\r\n"
    return text[i:j], j + 1, "\n"


def parse_github_output(text: str) -> dict[str, str]:
    """GITHUB_OUTPUT as the runner reads it (FileCommandManager's key-value
    enumeration): `name=value`, or `name<<DELIM` ... a line equal to DELIM.
    Raises on anything the runner would reject."""
    out: dict[str, str] = {}
    line, i, _ = _read_line(text, 0)
    while line is not None:
        if line:
            eq, hd = line.find("="), line.find("<<")
            if eq >= 0 and (hd < 0 or eq < hd):
                key, value = line.split("=", 1)
                if not key:
                    raise ValueError(f"Invalid format {line!r}. Name must not be empty")
            elif hd >= 0 and (eq < 0 or hd < eq):
                key, delimiter = line.split("<<", 1)
                if not key or not delimiter:
                    raise ValueError(f"Invalid format {line!r}. Name and delimiter must not be empty")
                start = end = i
                temp, i, newline = _read_line(text, i)
                while temp != delimiter:
                    if temp is None:
                        raise ValueError(f"Invalid value. Matching delimiter not found {delimiter!r}")
                    if newline is None:
                        raise ValueError("Invalid value. EOF marker missing new line.")
                    end = i - len(newline)
                    temp, i, newline = _read_line(text, i)
                value = text[start:end] if end > start else ""
            else:
                raise ValueError(f"Invalid format {line!r}")
            out[key] = value
        line, i, _ = _read_line(text, i)
    return out


def seed_image(registry, repo: str, sha: str, created: str | None = IMAGE_CREATED) -> str:
    """Pushes a small real image as <repo>:git-<sha>; its manifest digest.
    ``created=None``: a reproducible build's image, dated the Unix epoch."""
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w") as tar:
        data = f"app built from {sha}\n".encode()
        info = tarfile.TarInfo("app/version.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(layer_buf.getvalue(), mtime=0)
    diff_id = sha256_digest(layer_buf.getvalue())
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": created or "1970-01-01T00:00:00Z",
        "config": {"Labels": {"org.opencontainers.image.revision": sha}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256_digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256_digest(layer), "size": len(layer)}],
        **({"annotations": {"org.opencontainers.image.created": created}} if created else {}),
    }, separators=(",", ":")).encode()
    return registry.client().push_artifact(repo, f"git-{sha}", manifest, [config, layer])



def assert_no_secret(stdout: str, others: dict[str, str], *secrets: str) -> None:
    """A secret may reach stdout only inside the ::add-mask:: commands that
    come before every other line (the runner does not log those lines), and
    nowhere in ``others`` (stderr, the runner files: name -> text)."""
    lines = stdout.splitlines()
    masks = 0
    while masks < len(lines) and lines[masks].startswith("::add-mask::"):
        masks += 1
    for secret in secrets:
        assert f"::add-mask::{secret}" in lines[:masks], f"{secret!r} is not masked first"
        for where, text in (("stdout", "\n".join(lines[masks:])), *others.items()):
            assert secret not in text, f"secret in {where}"


def one_check_run(github) -> dict:
    runs = github.check_runs()
    assert len(runs) == 1, runs
    creates = [c for c in github.calls if c.operation == "checks/create" and c.status == 201]
    assert len(creates) == 1
    return runs[0]


def assert_requests_valid(github) -> None:
    github.assert_clean()
    for call in github.calls:
        body = call.body or {}
        assert len((body.get("output") or {}).get("annotations") or []) <= 50, call
        if call.operation == "repos/create-commit-status":
            assert len(body.get("description") or "") <= 140, body
