"""The documentation, read the way a test can read it: every Markdown file of the
repository (README.md, docs/, ARCHITECTURE.md, examples/, tests/data/...).

1. Snippets that stand for a file. A fenced block right after the line
   `<!-- file: PATH -->` must be the file PATH (relative to the repository
   root) byte for byte; after `<!-- excerpt: PATH -->`, whole consecutive
   lines of it. So a changed file fails here until its page shows it again.
   A marker that is not right before a fence fails (it would check nothing).
   An unmarked block that still copies a file of deploy/, examples/,
   .github/ or action.yml (six lines in a row, or a Kubernetes object of the
   same kind, name and namespace) fails too: mark it, or stop copying.
2. Links. Every relative link resolves to a file or directory of the
   repository (or of ../shared, which every checkout has beside it), every
   `#anchor` exists on its page, computed as GitHub computes heading anchors,
   and every http(s) link is well-formed (nothing is fetched).
3. The references agree with the code: docs/cli.md names every flag of every
   command's `--help` (and no flag a command does not have), and its tables
   the defaults `--help` states; every `release-capsule <command> --flag` (or
   `<command> --flag` code span) on any page names a flag that command has;
   docs/action.md names every input and output of action.yml (and nothing
   else) with action.yml's defaults; and the README keeps the test command CI
   runs (.ci/run).
4. Sketches held to the real thing. A Kargo promotion step shown in a page
   uses a step kind, and config keys, that the Stages of ../shared/consumers or
   deploy/kargo use; a Warehouse shown uses only fields the consumers' does.

Block and link syntax is CommonMark's as far as these pages use it: ATX
headings, backtick and tilde fences, inline links, reference definitions and
`<a href>`/`<a id>`. The reading is in docs_support.py; the checker's own tests,
on made-up repositories, are in test_docs_checker.py.
"""

from __future__ import annotations

import re

import yaml

from docs_support import (COMMANDS, ROOT, SHARED, _help_defaults, _help_flags, _section, command_flag_uses, link_problems,
                          links, pages, parse, snippet_problems)


# -- the checks, on this repository ------------------------------------------------

def test_every_page_is_read():
    found = [p.relative_to(ROOT).as_posix() for p in pages()]
    assert found[0] == "README.md" and "ARCHITECTURE.md" in found
    assert {"docs/cli.md", "docs/action.md", "docs/kargo.md", "docs/flux.md", "docs/security.md"} <= set(found), found
    for p in pages():
        page = parse(p)
        assert page.headings, f"{p}: no heading"
        last = page.fences[-1] if page.fences else None
        assert last is None or last.content.count("\n") < len(p.read_text().split("\n")), f"{p}: an unclosed fence"


def test_snippets_that_stand_for_files_are_those_files():
    problems = snippet_problems(ROOT, pages())
    assert not problems, "\n".join(problems)


def test_the_flux_page_shows_the_flux_files_whole():
    shown = {f.marker[1] for f in parse(ROOT / "docs" / "flux.md").fences if f.marker and f.marker[0] == "file"}
    for name in sorted(p.name for p in (ROOT / "deploy" / "flux").glob("*.yaml")):
        assert f"deploy/flux/{name}" in shown, f"docs/flux.md does not show deploy/flux/{name}"


def test_every_link_resolves_and_every_anchor_exists():
    problems = link_problems(ROOT, SHARED, pages())
    assert not problems, "\n".join(problems)


def test_the_readme_links_every_docs_page():
    linked = {dest.split("#")[0] for _, dest in links(parse(ROOT / "README.md"))}
    missing = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "docs").glob("*.md"))
               if p.relative_to(ROOT).as_posix() not in linked]
    assert not missing, f"README.md links no page {missing}"


def test_the_readme_keeps_the_commands_ci_and_newcomers_run():
    readme = ROOT / "README.md"
    blocks = [f.content.strip() for f in parse(readme).fences if f.info in ("sh", "bash", "console", "")]
    assert "scripts/test" in blocks, "the README's test command (.ci/run runs exactly it)"
    assert "scripts/demo" in blocks, "the README's one command that runs the tool"
    assert re.search(r"^exec scripts/test$", (ROOT / ".ci" / "run").read_text(), re.M)
    first_screen = "\n".join(readme.read_text().split("\n")[:45])
    assert re.search(r"uses: code-dot-org/release-capsule@", first_screen), "a workflow with uses: on the first screen"
    assert len(readme.read_text().split("\n")) <= 260, "the README stays short: the rest belongs in docs/"


# -- the references against the code --------------------------------------------------

def test_the_cli_reference_names_every_flag_of_every_command(run_cli):
    top = run_cli("--help")
    assert top.returncode == 0, top.stderr
    listed = set(re.findall(r"^  ([a-z][a-z-]+)  ", top.stdout, re.M)) - {"help"}
    assert listed == set(COMMANDS), f"commands in --help: {sorted(listed)}; docs/cli.md documents {COMMANDS}"
    path = ROOT / "docs" / "cli.md"
    text = path.read_text()
    page = parse(path)
    problems = []
    for command in COMMANDS:
        result = run_cli(command, "--help")
        assert result.returncode == 0, result.stderr
        flags = _help_flags(result.stdout)
        section = _section(page, text, command)
        mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", section))
        tabled = set(re.findall(r"^\| `(--[a-z][a-z0-9-]*)", section, re.M))
        tabled |= {m for row in re.findall(r"^\| (`--[^|]*)\|", section, re.M) for m in re.findall(r"--[a-z][a-z0-9-]*", row)}
        problems += [f"{command}: {f} (in --help) is not in docs/cli.md" for f in sorted(flags - mentioned)]
        problems += [f"{command}: docs/cli.md's table has {f}, which --help does not list" for f in sorted(tabled - flags)]
        for flag, default in _help_defaults(result.stdout).items():
            rows = [row for row in re.findall(r"^\|([^|]*)\|(.*)$", section, re.M)
                    if flag in re.findall(r"--[a-z][a-z0-9-]*", row[0])]
            rows = [row for row in rows if not row[1].lstrip().startswith("As for")]  # "As for `export-freight`"
            if rows and not any(re.search(r"(?<![\w.-])" + re.escape(default) + r"(?![\w-])", row[1]) for row in rows):
                problems.append(f"{command}: docs/cli.md's row for {flag} does not give its default {default}")
    assert not problems, "\n".join(problems)


def test_every_command_line_in_the_docs_uses_real_flags(run_cli):
    helps = {}
    problems = []
    for path in pages():
        for line, command, flag in command_flag_uses(parse(path)):
            if command not in COMMANDS:
                problems.append(f"{path.relative_to(ROOT)}:{line}: release-capsule has no command {command}")
                continue
            if command not in helps:
                result = run_cli(command, "--help")
                assert result.returncode == 0, result.stderr
                helps[command] = _help_flags(result.stdout) | {"--help"}
            if flag not in helps[command]:
                problems.append(f"{path.relative_to(ROOT)}:{line}: {command} has no flag {flag}")
    assert helps, "no command line was found in the docs"
    assert not problems, "\n".join(problems)


def test_the_action_page_names_every_input_and_output_of_action_yml():
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    path = ROOT / "docs" / "action.md"
    text = path.read_text()
    page = parse(path)
    for title, key in (("Inputs", "inputs"), ("Outputs", "outputs")):
        section = _section(page, text, title)
        documented = set(re.findall(r"^\| `([a-z-]+)` \|", section, re.M))
        assert documented == set(action[key]), (
            f"docs/action.md {title}: missing {sorted(set(action[key]) - documented)}, "
            f"not in action.yml {sorted(documented - set(action[key]))}")
    # A non-empty default of action.yml is what the Default column says (an
    # empty one is described in words: "generated SPDX 2.3", "`$GITOPS_TOKEN`").
    section = _section(page, text, "Inputs")
    cells = dict(re.findall(r"^\| `([a-z-]+)` \| ([^|]*) \|", section, re.M))
    wrong = [f"{name}: action.yml's default is {spec['default']!r}, the table says {cells[name]!r}"
             for name, spec in action["inputs"].items()
             if str(spec.get("default", "")) and f"`{spec['default']}`" not in cells[name]]
    assert not wrong, "docs/action.md Inputs:\n" + "\n".join(wrong)


def _kargo_steps(node) -> list[dict]:
    """Every Kargo promotion step (a mapping with `uses:` and `config:`) in a parsed document."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("uses"), str) and isinstance(node.get("config"), dict):
            found.append(node)
        for value in node.values():
            found += _kargo_steps(value)
    elif isinstance(node, list):
        for item in node:
            found += _kargo_steps(item)
    return found


def test_kargo_steps_in_the_docs_are_configured_as_the_real_stages_configure_them():
    """A promotion sketch in a page (the README's, docs/kargo.md's) is not a
    file, so the snippet check cannot hold it to one. It is held to the Stages
    that run: every step it shows is a kind ../shared/consumers or deploy/kargo
    uses, with config keys those Stages give that kind."""
    real: dict[str, set[str]] = {}
    for path in sorted([*(SHARED / "consumers").rglob("*.yaml"), *(ROOT / "deploy" / "kargo").glob("*.yaml")]):
        for doc in yaml.safe_load_all(path.read_text()):
            for step in _kargo_steps(doc):
                real.setdefault(step["uses"], set()).update(step["config"])
    assert {"oci-download", "untar", "yaml-parse", "helm-template", "http"} <= set(real), sorted(real)
    problems, shown = [], 0
    for p in pages():
        for fence in parse(p).fences:
            if fence.info not in ("yaml", "yml") or "uses:" not in fence.content:
                continue
            try:
                docs = list(yaml.safe_load_all(fence.content))
            except yaml.YAMLError:
                continue  # a fragment with placeholders; the snippet check covers copies of files
            for step in (s for doc in docs for s in _kargo_steps(doc)):
                if not isinstance(step.get("config"), dict) or step["uses"].startswith(("actions/", "docker/", "./")) or "@" in step["uses"]:
                    continue
                shown += 1
                where = f"{p.relative_to(ROOT)}:{fence.line}"
                if step["uses"] not in real:
                    problems.append(f"{where}: step `{step['uses']}` is used by no real Stage")
                elif unknown := set(step["config"]) - real[step["uses"]]:
                    problems.append(f"{where}: step `{step['uses']}` config {sorted(unknown)} is set by no real Stage")
    assert shown >= 6, f"only {shown} Kargo steps found in the docs: is the reading broken?"
    assert not problems, "\n".join(problems)


def _key_paths(node, prefix: str = "") -> set[str]:
    if isinstance(node, dict):
        return {f"{prefix}.{k}" for k in node} | {p for k, v in node.items() for p in _key_paths(v, f"{prefix}.{k}")}
    if isinstance(node, list):
        return {p for item in node for p in _key_paths(item, f"{prefix}[]")}
    return set()


def test_warehouses_in_the_docs_use_only_fields_the_real_warehouse_uses():
    real = _key_paths(yaml.safe_load((SHARED / "consumers" / "kargo-warehouse.yaml").read_text()))
    shown = 0
    for p in pages():
        for fence in parse(p).fences:
            if fence.info not in ("yaml", "yml") or "kind: Warehouse" not in fence.content:
                continue
            for doc in yaml.safe_load_all(fence.content):
                if isinstance(doc, dict) and doc.get("kind") == "Warehouse":
                    shown += 1
                    unknown = _key_paths(doc) - real
                    assert not unknown, f"{p.relative_to(ROOT)}:{fence.line}: {sorted(unknown)} not in the real Warehouse"
    assert shown >= 2, f"only {shown} Warehouses found in the docs (README.md, docs/kargo.md)"
