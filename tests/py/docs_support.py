"""Reading the documentation the way a test can: Markdown blocks, headings, anchors
and links as GitHub renders them, and the checks of test_docs.py as functions of a
repository root (so that test_docs_checker.py can run them on made-up ones)."""


from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

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


# -- the command line, read from --help ---------------------------------------------

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
