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

Block and link syntax is CommonMark's as far as these pages use it: ATX
headings, backtick and tilde fences, inline links, reference definitions and
`<a href>`/`<a id>`. The checker's own tests are at the end of this file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"


_NOT_THE_REPOSITORY = {"target", "node_modules"}


def pages(root: Path = ROOT) -> list[Path]:
    """README.md, docs/*.md, ARCHITECTURE.md, then every other Markdown file
    (build output, dependencies and hidden directories other than .github left out)."""
    first = [root / "README.md", *sorted((root / "docs").glob("*.md")), root / "ARCHITECTURE.md"]
    rest = [p for p in sorted(root.rglob("*.md"))
            if p not in first and not any(part in _NOT_THE_REPOSITORY or (part.startswith(".") and part != ".github")
                                          for part in p.relative_to(root).parts[:-1])]
    return first + rest


# -- reading Markdown -----------------------------------------------------------------

_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_MARKER = re.compile(r"^<!--\s*(?P<kind>file|excerpt):\s*(?P<path>\S+)\s*-->\s*$")
_ATX = re.compile(r"^ {0,3}(?P<level>#{1,6})(?:[ \t]+(?P<text>.*?))?(?:[ \t]+#+)?[ \t]*$")


@dataclass
class Fence:
    line: int  # 1-based line of the opening fence
    info: str
    content: str  # the lines between the fences, each ending with "\n"
    marker: tuple[str, str] | None  # ("file" | "excerpt", path)


@dataclass
class Page:
    path: Path
    fences: list[Fence] = field(default_factory=list)
    headings: list[tuple[int, int, str]] = field(default_factory=list)  # (line, level, raw text)
    prose: list[tuple[int, str]] = field(default_factory=list)  # lines outside fences
    unclosed: bool = False  # a fence runs to the end of the page


def parse(path: Path) -> Page:
    page = Page(path)
    lines = path.read_text().split("\n")
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m and not (m["fence"][0] == "`" and "`" in m["info"]):
            fence, start = m["fence"], i
            closing = re.compile(r"^ {0,3}" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}[ \t]*$")
            i += 1
            body = []
            while i < len(lines) and not closing.match(lines[i]):
                body.append(lines[i] + "\n")
                i += 1
            page.unclosed |= i >= len(lines)
            before = lines[start - 1] if start > 0 else ""
            marker = _MARKER.match(before)
            page.fences.append(Fence(start + 1, m["info"].strip(), "".join(body), (marker["kind"], marker["path"]) if marker else None))
            i += 1
            continue
        h = _ATX.match(lines[i])
        if h:
            page.headings.append((i + 1, len(h["level"]), h["text"] or ""))
        page.prose.append((i + 1, lines[i]))
        i += 1
    return page


def heading_text(raw: str) -> str:
    """A heading's text as GitHub renders it: code spans lose their backticks
    (and keep everything else); outside them, links keep their text, and
    emphasis and HTML tags go."""
    out = []
    for k, part in enumerate(re.split(r"(`+)(.*?)\1", raw)):
        if k % 3 == 1:
            continue  # the backticks of a code span
        if k % 3 == 2:
            out.append(part)
            continue
        part = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", part)
        part = re.sub(r"<[^>]+>", "", part)
        out.append(re.sub(r"(\*{1,3})(\S.*?\S|\S)\1", r"\2", part))
    return "".join(out).strip()


def slug(text: str) -> str:
    """GitHub's heading anchor (github-slugger): lowercase, every character
    that is not a letter, a digit, '_', '-' or a space removed, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(page: Page) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, _, raw in page.headings:
        base = slug(heading_text(raw))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    for _, line in page.prose:
        out.update(re.findall(r"""<a\s+(?:id|name)=["']([^"']+)["']""", line))
    return out


_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?(?P<dest>[^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(?P<dest>\S+?)>?(?:\s+.*)?$")
_HREF = re.compile(r"""<a\s[^>]*href=["'](?P<dest>[^"']+)["']""")
_AUTOLINK = re.compile(r"<(?P<dest>https?://[^>\s]+)>")


def paragraphs(page: Page) -> list[tuple[int, str]]:
    """(first line, text) of each run of consecutive non-blank lines outside
    code: a link's text may wrap onto the next line."""
    out: list[tuple[int, list[str]]] = []
    last = -1
    for number, line in page.prose:
        if not line.strip():
            last = -1
            continue
        if number == last + 1 and out:
            out[-1][1].append(line)
        else:
            out.append((number, [line]))
        last = number
    return [(first, "\n".join(lines)) for first, lines in out]


def links(page: Page) -> list[tuple[int, str]]:
    """(line, destination) of every link outside code and HTML comments."""
    out = []
    for first, text in paragraphs(page):
        # Blanked, not removed, so that offsets still give line numbers.
        blank = lambda m: re.sub(r"[^\n]", " ", m[0])  # noqa: E731
        text = re.sub(r"<!--.*?-->", blank, text, flags=re.S)
        text = re.sub(r"(`+)(?:(?!\1).)+?\1", blank, text, flags=re.S)  # code spans hold no links
        found = [(m.start(), m["dest"]) for p in (_INLINE_LINK, _HREF, _AUTOLINK) for m in p.finditer(text)]
        found += [(m.start(), m["dest"]) for m in re.finditer(_REF_DEF.pattern, text, re.M)]
        out.extend((first + text.count("\n", 0, start), dest) for start, dest in sorted(found))
    return out


# -- the checks, as functions of a repository root (the self-tests use others) ---------

def link_problems(root: Path, shared: Path, page_paths: list[Path]) -> list[str]:
    parsed = {p.resolve(): parse(p) for p in page_paths}
    cache: dict[Path, set[str]] = {}

    def anchors_of(target: Path) -> set[str]:
        if target not in cache:
            cache[target] = anchors(parsed.get(target) or parse(target))
        return cache[target]

    problems = []
    for page in parsed.values():
        where = page.path.relative_to(root)
        for number, dest in links(page):
            at = f"{where}:{number}: {dest}"
            if not dest:
                problems.append(f"{at}: empty link")
                continue
            parts = urlsplit(dest)
            if parts.scheme in ("http", "https"):
                host = parts.hostname or ""
                if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", host) or " " in dest:
                    problems.append(f"{at}: not a well-formed http(s) URL")
                continue
            if parts.scheme or dest.startswith("//"):
                problems.append(f"{at}: only http(s) and relative links are allowed")
                continue
            if dest.startswith("/"):
                problems.append(f"{at}: an absolute path; link relative to the page")
                continue
            target = (page.path.parent / unquote(parts.path)).resolve() if parts.path else page.path.resolve()
            if not target.is_relative_to(root.resolve()):
                if not target.is_relative_to(shared.resolve()):
                    problems.append(f"{at}: leaves the repository (only ../shared, beside every checkout, may be linked)")
                    continue
                if not shared.is_dir():
                    continue  # not beside this checkout: nothing to check against
            if not target.exists():
                problems.append(f"{at}: {target} does not exist")
                continue
            if parts.fragment:
                if target.suffix != ".md" or not target.is_file():
                    problems.append(f"{at}: an anchor into something that is not a Markdown page")
                elif parts.fragment not in anchors_of(target):
                    problems.append(f"{at}: no heading of {target.name} has the anchor #{parts.fragment}")
    return problems


COPIED_DIRS = ("deploy", "examples", ".github")


def copied_files(root: Path) -> list[Path]:
    files = [root / "action.yml"]
    for d in COPIED_DIRS:
        files.extend(p for p in sorted((root / d).rglob("*")) if p.is_file() and p.suffix in (".yaml", ".yml"))
    return [f for f in files if f.is_file()]


def _objects(text: str) -> set[tuple[str, str, str]]:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        return set()
    out = set()
    for d in docs:
        if isinstance(d, dict) and isinstance(d.get("metadata"), dict) and d.get("kind"):
            m = d["metadata"]
            out.add((str(d["kind"]), str(m.get("name")), str(m.get("namespace"))))
    return out


def _longest_common_run(a: list[str], b: list[str]) -> int:
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        row = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                row[j] = previous[j - 1] + 1
                best = max(best, row[j])
        previous = row
    return best


def _significant(text: str) -> list[str]:
    return [line.rstrip() for line in text.split("\n") if line.strip() and not line.strip().startswith("#")]


RUN_THAT_IS_A_COPY = 6


def snippet_problems(root: Path, page_paths: list[Path]) -> list[str]:
    files = copied_files(root)
    file_lines = {f: _significant(f.read_text()) for f in files}
    file_objects = {f: _objects(f.read_text()) for f in files}
    problems = []
    for path in page_paths:
        page = parse(path)
        fenced = {f.line - 1 for f in page.fences if f.marker}
        for number, line in page.prose:
            if _MARKER.match(line) and number not in fenced:
                problems.append(f"{path.relative_to(root)}:{number}: the marker is not on the line right before "
                                "a fenced block, so it checks nothing")
        for fence in page.fences:
            at = f"{path.relative_to(root)}:{fence.line}"
            if fence.marker:
                kind, name = fence.marker
                target = (root / name).resolve()
                if not target.is_relative_to(root.resolve()) or not target.is_file():
                    problems.append(f"{at}: {kind}: {name} is not a file of the repository")
                    continue
                text = target.read_text()
                if kind == "file" and fence.content != text:
                    problems.append(f"{at}: the block is not {name} as it is; copy the file again")
                if kind == "excerpt":
                    lines = text.splitlines(keepends=True)
                    wanted = fence.content.splitlines(keepends=True)
                    runs = (lines[i:i + len(wanted)] == wanted for i in range(len(lines) - len(wanted) + 1))
                    if not wanted or not any(runs):
                        problems.append(f"{at}: the block is not whole consecutive lines of {name}; copy them again")
                continue
            mine = _significant(fence.content)
            objects = _objects(fence.content)
            for f in files:
                rel = f.relative_to(root)
                shared = set(mine) & set(file_lines[f])
                run = _longest_common_run(mine, file_lines[f]) if len(shared) >= RUN_THAT_IS_A_COPY else 0
                same = objects & file_objects[f]
                if run >= RUN_THAT_IS_A_COPY or same:
                    why = f"{run} lines in a row" if run >= RUN_THAT_IS_A_COPY else f"the same object {sorted(same)[0]}"
                    problems.append(f"{at}: copies {rel} ({why}) without saying so; put <!-- file: {rel} --> "
                                    f"or <!-- excerpt: {rel} --> on the line before the block, or stop copying")
    return problems


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

COMMANDS = ["build", "publish", "verify", "pull", "serve", "export-freight", "record-gate", "preview", "public-key", "action"]


def _section(page: Page, text: str, title: str) -> str:
    """The lines from heading `title` to the next heading of the same or a higher level."""
    lines = text.split("\n")
    for k, (line, level, raw) in enumerate(page.headings):
        if heading_text(raw) == title:
            end = next((l2 for l2, lv2, _ in page.headings[k + 1:] if lv2 <= level), len(lines) + 1)
            return "\n".join(lines[line - 1:end - 1])
    raise AssertionError(f"{page.path.name}: no heading {title!r}")


def _help_flags(text: str) -> set[str]:
    return {m[1] for m in re.finditer(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)", text, re.M)} - {"--help", "--version"}


def _help_defaults(text: str) -> dict[str, str]:
    """flag -> its `[default: X]` where X is one literal value (not a sentence or a variable)."""
    out = {}
    for m in re.finditer(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)(.*?)(?=^\s+(?:-\w, )?--|\Z)", text, re.M | re.S):
        d = re.search(r"\[default: ((?:[^\[\]\s]|\[[^\]\s]*\])+)\]", m[2])
        if d and not d[1].startswith(("$", "<")):
            out[m[1]] = d[1]
    return out


_RUN = re.compile(r"release-capsule[ \t]+(?P<cmd>[a-z][a-z-]*)(?P<args>(?:\\\n|[^\n`])*)")
_SPAN = re.compile(r"(`+)(?P<code>(?:(?!\1).)+?)\1", re.S)


def command_flag_uses(page: Page) -> list[tuple[int, str, str]]:
    """(line, command, flag) for every `release-capsule <command> ... --flag` in a
    fenced block or code span of the page, and every code span that starts
    `<command> --flag` (`publish --signing-key`)."""
    out = []
    for fence in page.fences:
        if fence.info.split()[:1] in (["sh"], ["bash"], ["console"], ["shell"], ["text"], []):
            for m in _RUN.finditer(fence.content):
                line = fence.line + 1 + fence.content.count("\n", 0, m.start())
                out += [(line, m["cmd"], f) for f in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", m["args"])]
    for first, text in paragraphs(page):
        for span in _SPAN.finditer(text):
            code, line = span["code"], first + text.count("\n", 0, span.start())
            m = _RUN.search(code) or re.match(r"(?P<cmd>[a-z][a-z-]*)(?P<args>\s+--.*)", code, re.S)
            if m and m["cmd"] in COMMANDS:
                out += [(line, m["cmd"], f) for f in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", m["args"])]
    return out


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


# -- the checker's own tests ------------------------------------------------------------

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
