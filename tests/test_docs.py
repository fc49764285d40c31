"""The docs check: README.md and docs/*.md point only at what exists.

- every relative link names a file of the repository (never one outside it), and a
  ``#anchor`` a heading of the target page (GitHub's slugs);
- every ``make TARGET`` quoted in code is a target of the Makefile;
- every ``ivr COMMAND [SUBCOMMAND …]`` quoted in code is a command of the CLI;
- every repository path quoted in code (``bench/…``, ``tests/…``, ``ivr/…`` …) exists;
- the README's embedding example runs.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from ivr.cli import main

ROOT = Path(__file__).resolve().parent.parent

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
MAKE = re.compile(r"(?<![\w/.-])make\s+([a-z][\w-]*)")
PATH = re.compile(r"(?<![\w/.-])((?:bench|dialplans|examples|ivr|prompts|tests)/[\w./*<>{}-]*)")


def doc_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def split(text: str) -> tuple[str, list[str], list[str]]:
    """(prose with code blocked out, [all code], [code that names files]).

    Code is each line of a fenced block and each inline span. Files are named by inline
    spans, the lines of ``sh`` blocks and the ``$ `` command lines of output blocks.
    """
    prose: list[str] = []
    code: list[str] = []
    commands: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fence = None if fence is not None else line.strip()[3:].strip()
            prose.append("")
        elif fence is not None:
            code.append(line)
            if fence == "sh" or line.startswith("$ "):
                commands.append(line.split(" #")[0])
            prose.append("")
        else:
            prose.append(line)
    joined = "\n".join(prose)
    spans = [" ".join(m.group(2).split()) for m in INLINE_CODE.finditer(joined)]
    prose_only = INLINE_CODE.sub(lambda m: " " * len(m.group(0)), joined)
    return prose_only, code + spans, commands + spans


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: formatting dropped, lower case, punctuation out."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    fence = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.strip()):
            fence = not fence
        if fence:
            continue
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def link_problems(root: Path = ROOT) -> Iterator[str]:
    for doc in doc_files(root):
        text = doc.read_text(encoding="utf-8")
        where = doc.relative_to(root)
        if "../shared" in text:
            yield f"{where}: refers to ../shared (outside the repository)"
        prose, _, _ = split(text)
        for m in LINK.finditer(prose):
            target = m.group(1)
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            if file_part.startswith("/"):
                yield f"{where}: absolute link {target}"
                continue
            dest = (doc.parent / file_part).resolve() if file_part else doc
            if not dest.is_relative_to(root):
                yield f"{where}: link outside the repository: {target}"
            elif not dest.exists():
                yield f"{where}: broken link: {target}"
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                yield f"{where}: no heading #{anchor} in {dest.relative_to(root)}"


def makefile_targets(root: Path = ROOT) -> set[str]:
    targets = set()
    for line in (root / "Makefile").read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([\w.$()/ -]+?)\s*::?(?!=)", line)
        if m and not line.startswith("\t"):
            targets.update(m.group(1).split())
    return targets


def ivr_commands(snippet: str) -> Iterator[list[str]]:
    """The words after ``ivr`` where a snippet is an ``ivr`` command line."""
    for line in snippet.splitlines():
        line = line.strip().removeprefix("$ ").strip()
        if line.startswith("ivr "):
            yield line.split()[1:]


def command_problem(words: list[str]) -> str | None:
    command: click.Command = main
    path = ["ivr"]
    ctx = click.Context(main)
    for word in words:
        if not isinstance(command, click.Group) or not re.fullmatch(r"[a-z][a-z0-9-]*", word):
            return None
        sub = command.get_command(ctx, word)
        if sub is None:
            return f"no command {' '.join([*path, word])!r}"
        command = sub
        path.append(word)
    return None


def command_problems(root: Path = ROOT) -> Iterator[str]:
    targets = makefile_targets(root)
    for doc in doc_files(root):
        where = doc.relative_to(root)
        _, code, naming_files = split(doc.read_text(encoding="utf-8"))
        for snippet in code:
            for target in MAKE.findall(snippet):
                if target not in targets:
                    yield f"{where}: `make {target}` is no Makefile target"
            for words in ivr_commands(snippet):
                problem = command_problem(words)
                if problem:
                    yield f"{where}: {problem} (in `{snippet}`)"
        for snippet in naming_files:
            for m in PATH.finditer(snippet):
                path = m.group(1).rstrip(".")
                if any(c in path for c in "<>{}") or re.match(r":\d", snippet[m.end() :]):
                    continue  # a placeholder, or a file:line:col of an example message
                if "*" in path:
                    if not list(root.glob(path)):
                        yield f"{where}: nothing matches {path}"
                elif not (root / path).exists():
                    yield f"{where}: no such file {path}"


def test_links_point_at_files_and_headings_of_the_repository() -> None:
    problems = list(link_problems())
    assert not problems, "\n".join(problems)


def test_quoted_make_targets_ivr_commands_and_paths_exist() -> None:
    problems = list(command_problems())
    assert not problems, "\n".join(problems)


def test_the_readme_embedding_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", readme, re.DOTALL | re.MULTILINE)
    assert blocks, "README.md has no python example"
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), {"__name__": "readme_example"})
    assert "demo_balance" in out.getvalue()  # account and PIN were right: the balance plays


def test_the_check_catches_what_it_should(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "Makefile").write_text("run: venv\n\techo\ntest:\n")
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Sub `x` — y\n")
    (tmp_path / "README.md").write_text(
        "[ok](docs/a.md#sub-x--y) [gone](docs/b.md) [anchor](docs/a.md#nope)\n"
        "[out](../elsewhere.md) see ../shared/X.md\n\n"
        "```sh\nmake run\nmake bogus\nivr check x.yaml\nivr portal nope\n"
        ".venv/bin/python bench/none.py\n```\n"
    )
    links = list(link_problems(tmp_path))
    assert links == [
        "README.md: refers to ../shared (outside the repository)",
        "README.md: broken link: docs/b.md",
        "README.md: no heading #nope in docs/a.md",
        "README.md: link outside the repository: ../elsewhere.md",
    ]
    commands = list(command_problems(tmp_path))
    assert commands == [
        "README.md: `make bogus` is no Makefile target",
        "README.md: no command 'ivr portal nope' (in `ivr portal nope`)",
        "README.md: no such file bench/none.py",
    ]


def test_no_source_comment_points_outside_the_repository() -> None:
    hits = []
    for top in ("ivr", "tests", "bench", "examples"):
        for path in (ROOT / top).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".sh", ".cfg", ".yaml", ".md", ""}:
                if path == Path(__file__).resolve():
                    continue
                text = path.read_text(encoding="utf-8", errors="replace")
                if "../shared" in text or "/work/shared" in text:
                    hits.append(str(path.relative_to(ROOT)))
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "../shared" not in makefile
    assert hits == []
