"""The checker of test_docs.py on made-up repositories: each check finds what it
is meant to find, so the checks on this repository cannot pass by reading nothing."""

from __future__ import annotations

import pytest

from docs_support import (_help_defaults, _help_flags, anchors, command_flag_uses, heading_text, link_problems, pages,
                          parse, snippet_problems)


def test_anchors_are_computed_as_github_does(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Release capsule format, v1\n"
                    "## 8. The trust chain (`verify`)\n"
                    "### What Kargo does with a 502 or 503\n"
                    "## GitOps records: source-snapshot freight and gate records\n"
                    "## Setup\n## Setup\n## Setup\n"
                    "## The [verifier](x.md) *service*\n"
                    "## `INPUT_*` and `GITHUB_*`\n"
                    "```sh\n# not a heading\n```\n"
                    '<a id="custom-anchor"></a>\n')
    assert anchors(parse(page)) == {
        "release-capsule-format-v1", "8-the-trust-chain-verify", "what-kargo-does-with-a-502-or-503",
        "gitops-records-source-snapshot-freight-and-gate-records", "setup", "setup-1", "setup-2",
        "the-verifier-service", "input_-and-github_", "custom-anchor"}


def test_the_link_check_finds_what_is_broken(tmp_path):
    root, shared = tmp_path / "repo", tmp_path / "shared"
    (root / "docs").mkdir(parents=True)
    shared.mkdir()
    (shared / "SPEC.md").write_text("# Spec\n## 8. The trust chain\n")
    (root / "README.md").write_text(
        "# Readme\n## Quick start\n"
        "[ok](docs/a.md#part-two) [ok](#quick-start) [ok](../shared/SPEC.md#8-the-trust-chain) [ok](https://kargo.io/docs)\n"
        "[bad](docs/missing.md) [bad](docs/a.md#nowhere) [bad](#nowhere) [bad](https://example) [bad](https:/x)\n"
        "[bad](../outside.md) [bad](/docs/a.md) [bad](ftp://x.org/) `[not a link](nowhere.md)`\n"
        "```md\n[not a link](nowhere.md)\n```\n")
    (root / "docs" / "a.md").write_text("# A\n## Part two\n[bad](../README.md#part-two) [ok](../README.md)\n")
    (root / "ARCHITECTURE.md").write_text("# Architecture\n")
    problems = link_problems(root, shared, pages(root))
    bad = [p.split(": ")[1] for p in problems]
    assert bad == ["docs/missing.md", "docs/a.md#nowhere", "#nowhere", "https://example", "https:/x",
                   "../outside.md", "/docs/a.md", "ftp://x.org/", "../README.md#part-two"], problems


def test_the_snippet_check_fails_when_the_file_changes(tmp_path):
    root = tmp_path / "repo"
    (root / "deploy").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "ARCHITECTURE.md").write_text("# Architecture\n")
    (root / "action.yml").write_text("name: x\n")
    stage = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: one\n  namespace: ns\ndata:\n  a: '1'\n  b: '2'\n"
    (root / "deploy" / "cm.yaml").write_text(stage)
    (root / "README.md").write_text(
        "# Readme\n<!-- file: deploy/cm.yaml -->\n```yaml\n" + stage + "```\n"
        "<!-- excerpt: deploy/cm.yaml -->\n```yaml\ndata:\n  a: '1'\n```\n")
    (root / "docs" / "x.md").write_text(
        "# X\nA copy without a marker:\n```yaml\n" + stage.replace("'2'", "'3'") + "```\n"
        "A sketch of its own:\n```yaml\nkind: ConfigMap\nmetadata: {name: other}\n```\n")
    problems = snippet_problems(root, pages(root))
    assert len(problems) == 1 and problems[0].startswith("docs/x.md:3: copies deploy/cm.yaml"), problems
    (root / "deploy" / "cm.yaml").write_text(stage.replace("a: '1'", "a: '9'"))
    problems = snippet_problems(root, pages(root))
    assert [p.split(": ", 1)[1] for p in problems[:2]] == [
        "the block is not deploy/cm.yaml as it is; copy the file again",
        "the block is not whole consecutive lines of deploy/cm.yaml; copy them again"], problems
    (root / "README.md").write_text("# Readme\n<!-- file: deploy/gone.yaml -->\n```yaml\nx: 1\n```\n")
    assert "deploy/gone.yaml is not a file" in snippet_problems(root, pages(root))[0]


@pytest.mark.parametrize("help_text, flags", [
    ("Options:\n      --sha <SHA>\n          The commit\n  -h, --help\n          Print help\n", {"--sha"}),
    ("Options:\n      --signing-key <FILE>  The key\n      --json\n  -V, --version  Print version\n", {"--signing-key", "--json"}),
])
def test_flags_are_read_from_help(help_text, flags):
    assert _help_flags(help_text) == flags


def test_fences_nest_as_commonmark_says(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# P\n````markdown\n```diff\n-a\n```\n## not a heading\n````\n## After\n~~~\nx\n~~~\n")
    parsed = parse(page)
    assert [f.info for f in parsed.fences] == ["markdown", ""]
    assert [heading_text(h[2]) for h in parsed.headings] == ["P", "After"]
    assert not parsed.unclosed
    page.write_text("# P\n```yaml\na: 1\n")
    assert parse(page).unclosed


def test_every_markdown_file_is_read(tmp_path):
    root = tmp_path / "repo"
    for name in ("README.md", "ARCHITECTURE.md", "docs/a.md", "examples/x/README.md", "tests/data/SOURCES.md",
                 ".github/PULL_REQUEST_TEMPLATE.md", ".venv/lib/pkg/README.md", "target/doc/x.md",
                 "node_modules/m/README.md"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("# X\n")
    assert [p.relative_to(root).as_posix() for p in pages(root)] == [
        "README.md", "docs/a.md", "ARCHITECTURE.md", ".github/PULL_REQUEST_TEMPLATE.md",
        "examples/x/README.md", "tests/data/SOURCES.md"]


def test_a_marker_away_from_its_fence_and_a_copy_in_any_fence_fail(tmp_path):
    root = tmp_path / "repo"
    (root / "examples").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "ARCHITECTURE.md").write_text("# Architecture\n")
    workflow = "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: one\n      - run: two\n"
    (root / "examples" / "w.yml").write_text(workflow)
    (root / "README.md").write_text("# Readme\n<!-- file: examples/w.yml -->\n\n```yaml\n" + workflow + "```\n")
    (root / "docs" / "a.md").write_text("# A\n```text\n" + workflow + "```\n")
    problems = snippet_problems(root, pages(root))
    assert len(problems) == 3, problems
    assert problems[0].startswith("README.md:2: the marker is not on the line right before"), problems
    assert problems[1].startswith("README.md:4: copies examples/w.yml"), problems
    assert problems[2].startswith("docs/a.md:2: copies examples/w.yml"), problems


def test_command_lines_are_found_in_fences_and_code_spans(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# P\n```sh\nrelease-capsule verify \\\n  --capsule x \\\n  --no-such-flag\n```\n"
                    "Run `publish --signing-key FILE`, or `release-capsule pull --output d`;\n"
                    "`cosign verify --key k` and `--json` are not ours.\n"
                    "```yaml\nargs: [release-capsule serve --port]\n```\n")
    assert command_flag_uses(parse(page)) == [
        (3, "verify", "--capsule"), (3, "verify", "--no-such-flag"), (7, "publish", "--signing-key"),
        (7, "pull", "--output")]


def test_defaults_are_read_from_help():
    text = ("Options:\n      --listen <LISTEN>\n          Address [default: 0.0.0.0:8080]\n"
            "      --commit-author <A>\n          Who [default: github-actions[bot]]\n"
            "      --repository <R>\n          Repo [default: $GITHUB_REPOSITORY]\n"
            "      --registry-login-host <HOST>\n          [default: the capsule repository's registry]\n"
            "      --json\n          Print JSON\n")
    assert _help_defaults(text) == {"--listen": "0.0.0.0:8080", "--commit-author": "github-actions[bot]"}
