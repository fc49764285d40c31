"""Bad dialplan files: each is one DialplanError with exactly one one-line problem.

Never another exception, never a traceback, never code run from the file.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr import DialplanError, load_dialplan
from ivr.yaml_source import MAX_FILE_BYTES, MAX_NODES, Source, parse_yaml

MB50 = 50 * 2**20


def one_problem(path: Path) -> str:
    """The single problem loading ``path`` reports, as its one-line str()."""
    with pytest.raises(DialplanError) as info:
        load_dialplan(path)
    (problem,) = info.value.problems
    text = str(problem)
    assert "\n" not in text and "\r" not in text
    assert str(info.value) == text
    assert problem.severity == "error"
    assert problem.file == str(path)
    return text


def write(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    return path


# --- content that is not a dialplan ---------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "where_what"),
    [
        (b"", ": file is empty"),
        (b"  \n\n\t \n", ": file is empty"),
        (b"# only a comment\n# and another\n", ": file is empty (only comments)"),
        (b"\n  # indented comment\n\n", ": file is empty (only comments)"),
        (b"- a\n- b\n", ":1:1: top level must be a mapping, not a list"),
        (b"just a string\n", ":1:1: top level must be a mapping, not a string"),
        (b"42\n", ":1:1: top level must be a mapping, not a number"),
        (b"true\n", ":1:1: top level must be a mapping, not a boolean"),
        (b"~\n", ":1:1: top level must be a mapping, not empty"),
        (b"---\n# nothing\n", ":3:1: top level must be a mapping, not empty"),
    ],
    ids=[
        "empty",
        "whitespace",
        "comments",
        "indented-comment",
        "list",
        "string",
        "number",
        "boolean",
        "null",
        "empty-document",
    ],
)
def test_not_a_mapping(tmp_path: Path, content: bytes, where_what: str) -> None:
    path = write(tmp_path, content)
    assert one_problem(path) == f"{path}{where_what}"


@pytest.mark.parametrize(
    ("content", "where_what"),
    [
        (b"a: 1\x00\n", ": not a YAML text file (contains NUL bytes)"),
        (b"\x00", ": not a YAML text file (contains NUL bytes)"),
        (b"a: \xff\xfe\n", ": not UTF-8 text (bad byte at offset 3)"),
        ("grüße: x\n".encode("latin-1"), ": not UTF-8 text (bad byte at offset 2)"),
        (b"a: \xe2\x82\n", ": not UTF-8 text (bad byte at offset 3)"),
        (b"a: b\x07\n", ": not a YAML text file: unacceptable character #x0007 at offset 4"),
        (b"\x1b[31mred\n", ": not a YAML text file: unacceptable character #x001b at offset 0"),
    ],
    ids=["nul", "only-nul", "bad-utf8", "latin1", "truncated-utf8", "bell", "escape"],
)
def test_binary_content(tmp_path: Path, content: bytes, where_what: str) -> None:
    path = write(tmp_path, content)
    assert one_problem(path) == f"{path}{where_what}"


def test_random_bytes_with_nul(tmp_path: Path) -> None:
    data = random.Random(20240101).randbytes(4096)
    assert b"\x00" in data
    path = write(tmp_path, data)
    assert one_problem(path) == f"{path}: not a YAML text file (contains NUL bytes)"


def test_random_bytes_without_nul(tmp_path: Path) -> None:
    data = random.Random(7).randbytes(4096).replace(b"\x00", b"")
    with pytest.raises(UnicodeDecodeError) as info:
        data.decode("utf-8")
    path = write(tmp_path, data)
    assert one_problem(path) == f"{path}: not UTF-8 text (bad byte at offset {info.value.start})"


UNCLOSED = (
    "YAML syntax error: found unexpected end of stream: the quote that begins here is never closed"
)


@pytest.mark.parametrize(
    ("content", "where_what"),
    [
        (b"a: [1, 2\n", ":2:1: YAML syntax error: did not find expected ',' or ']'"),
        (b'a: 1\nb: "x\rc: 2\r', f":2:4: {UNCLOSED}"),
        (b"\xef\xbb\xbfa: 'x\r\nb: 2", f":1:4: {UNCLOSED}"),
        (b"a:\n\tb: 1\n", ":2:1: YAML syntax error: found character that cannot start any token"),
        (b"a: *nowhere\n", ":1:4: YAML syntax error: found undefined alias"),
        (b"a: b: c\n", ":1:5: YAML syntax error: mapping values are not allowed in this context"),
        (b"%YAML 2.0\n---\na: 1\n", ":1:1: YAML syntax error: found incompatible YAML document"),
        (b"? [a]\n: 1\n", ":1:3: mapping keys must be plain scalars"),
        (b"a: &s 1\nm: {<<: *s}\n", ":2:5: '<<' must merge a mapping"),
        (b"a: &a [*a]\n", ":1:4: YAML nested too deeply"),
        (b"[" * 100 + b"]" * 100, ":1:66: YAML nested too deeply"),
        (b"[" * 5000 + b"]" * 5000, ":1:1001: YAML syntax error: exceeded maximum nesting depth"),
        (b"a: !!set {b, c}\n", ":1:4: unsupported YAML tag tag:yaml.org,2002:set"),
        (b"a: !local {b: 1}\n", ":1:4: unsupported YAML tag !local"),
        (
            b"a: !local 1\n",
            ":1:4: bad value: could not determine a constructor for the tag '!local'",
        ),
    ],
    ids=[
        "unclosed-list",
        "unclosed-quote-cr",
        "unclosed-quote-bom-crlf",
        "tab-indent",
        "undefined-alias",
        "nested-mapping-value",
        "yaml-2.0",
        "complex-key",
        "merge-scalar",
        "recursive-alias",
        "nested-100",
        "nested-5000",
        "set-tag",
        "local-tag-mapping",
        "local-tag-scalar",
    ],
)
def test_broken_yaml(tmp_path: Path, content: bytes, where_what: str) -> None:
    path = write(tmp_path, content)
    assert one_problem(path) == f"{path}{where_what}"


def test_two_documents_are_an_error_at_the_second(tmp_path: Path) -> None:
    path = write(tmp_path, b"a: 1\n---\nb: 2\n")
    assert one_problem(path).startswith(f"{path}:2:1: YAML syntax error: ")


# --- code in the file is never run -----------------------------------------------------
@pytest.mark.parametrize(
    ("template", "where_what"),
    [
        (
            "a: !!python/object/apply:os.system ['touch {marker}']\n",
            ":1:4: unsupported YAML tag tag:yaml.org,2002:python/object/apply:os.system",
        ),
        (
            "!!python/object/apply:os.system ['touch {marker}']\n",
            ":1:1: unsupported YAML tag tag:yaml.org,2002:python/object/apply:os.system",
        ),
        (
            "a: !!python/object/apply:os.system\n  - touch {marker}\n",
            ":1:4: unsupported YAML tag tag:yaml.org,2002:python/object/apply:os.system",
        ),
        (
            "a: !!python/object/new:os.system ['touch {marker}']\n",
            ":1:4: unsupported YAML tag tag:yaml.org,2002:python/object/new:os.system",
        ),
        (
            "a: !!python/object/apply:pathlib.Path.touch\n  - {marker}\n",
            ":1:4: unsupported YAML tag tag:yaml.org,2002:python/object/apply:pathlib.Path.touch",
        ),
        (
            "a: !!python/name:os.system\n",
            ":1:4: bad value: could not determine a constructor for the tag"
            " 'tag:yaml.org,2002:python/name:os.system'",
        ),
        (
            "? !!python/object/apply:os.system ['touch {marker}']\n: 1\n",
            ":1:3: mapping keys must be plain scalars",
        ),
    ],
    ids=["apply-value", "apply-top", "apply-block", "new", "path-touch", "name", "apply-key"],
)
def test_a_python_object_tag_is_an_error_and_never_runs(
    tmp_path: Path, template: str, where_what: str
) -> None:
    marker = tmp_path / "pwned"
    path = write(tmp_path, template.replace("{marker}", str(marker)).encode())
    assert one_problem(path) == f"{path}{where_what}"
    assert not marker.exists()


# --- size and shape limits --------------------------------------------------------------
@pytest.mark.timeout(20)
def test_a_billion_laughs_alias_bomb(tmp_path: Path) -> None:
    """9 levels of lists of 9 aliases each: 9**9 nodes if expanded."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    path = write(tmp_path, ("\n".join(lines) + "\n").encode())
    assert path.stat().st_size < 1000
    start = time.perf_counter()
    assert one_problem(path) == (
        f"{path}:1:14: more than {MAX_NODES} YAML nodes after alias expansion (an alias bomb?)"
    )
    assert time.perf_counter() - start < 5


@pytest.mark.timeout(20)
def test_an_alias_bomb_of_mappings(tmp_path: Path) -> None:
    lines = ["a: &a {x: 1, y: 2, z: 3, w: 4, v: 5, u: 6, t: 7, s: 8, r: 9}"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} {{" + ", ".join(f"k{i}: *{prev}" for i in range(9)) + "}")
    path = write(tmp_path, ("\n".join(lines) + "\n").encode())
    text = one_problem(path)
    assert text.startswith(f"{path}:")
    assert text.endswith(f"more than {MAX_NODES} YAML nodes after alias expansion (an alias bomb?)")


def test_a_50_mb_text_file(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("wb") as out:
        chunk = b"a: 1\n" * (2**20 // 5) + b"#" * (2**20 % 5 - 1) + b"\n"
        assert len(chunk) == 2**20
        for _ in range(50):
            out.write(chunk)
    assert path.stat().st_size == MB50
    assert one_problem(path) == (
        f"{path}: file is {MB50} bytes; the limit is {MAX_FILE_BYTES} bytes"
    )


def test_a_50_mb_sparse_file(tmp_path: Path) -> None:
    path = tmp_path / "sparse.yaml"
    with path.open("wb") as out:
        out.write(b"a: 1\n")
        out.truncate(MB50)
    assert one_problem(path) == (
        f"{path}: file is {MB50} bytes; the limit is {MAX_FILE_BYTES} bytes"
    )


def test_the_size_limit_is_exact(tmp_path: Path) -> None:
    line = b"#" * 1023 + b"\n"
    path = write(tmp_path, line * (MAX_FILE_BYTES // len(line)))
    assert path.stat().st_size == MAX_FILE_BYTES
    assert one_problem(path) == f"{path}: file is empty (only comments)"
    path.write_bytes(line * (MAX_FILE_BYTES // len(line)) + b"\n")
    assert one_problem(path) == (
        f"{path}: file is {MAX_FILE_BYTES + 1} bytes; the limit is {MAX_FILE_BYTES} bytes"
    )


# --- not a file -------------------------------------------------------------------------
def test_a_directory_passed_as_the_file(tmp_path: Path) -> None:
    assert one_problem(tmp_path) == f"{tmp_path}: is a directory, not a YAML file"


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert one_problem(path) == f"{path}: cannot read: No such file or directory"


def test_a_file_under_a_regular_file(tmp_path: Path) -> None:
    path = write(tmp_path, b"a: 1\n") / "plan.yaml"
    assert one_problem(path) == f"{path}: cannot read: Not a directory"


# --- bugs -------------------------------------------------------------------------------
@pytest.mark.timeout(20)
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_the_size_limit_holds_for_a_fifo(tmp_path: Path) -> None:
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)

    def feed() -> None:
        try:
            with path.open("wb") as out:
                for _ in range(2 * MAX_FILE_BYTES // 64):
                    out.write(b"#" * 63 + b"\n")
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        text = one_problem(path)
    finally:
        if writer.is_alive():  # the loader never opened the pipe: let the writer go
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(timeout=10)
    # the whole 2 MB stream of comments was read if this is "file is empty (only comments)"
    assert "file is empty" not in text.removeprefix(str(path))


CRASHERS = [
    pytest.param(b"a: !!int abc\n", 1, 4, id="int-tag"),
    pytest.param(b"a: !!int ''\n", 1, 4, id="int-tag-empty"),
    pytest.param(b"a: !!float abc\n", 1, 4, id="float-tag"),
    pytest.param(b"a: !!bool maybe\n", 1, 4, id="bool-tag"),
    pytest.param(b"a: !!timestamp soon\n", 1, 4, id="timestamp-tag"),
    pytest.param(b"description: 2024-02-30\n", 1, 14, id="plain-bad-date"),
    pytest.param(b"a: 1\n2024-13-01: x\n", 2, 1, id="bad-date-key"),
    pytest.param(b"!local a: 1\n", 1, 1, id="local-tag-key"),
    pytest.param(b"!!int abc: 1\n", 1, 1, id="int-tag-key"),
    pytest.param(b"a: " + b"9" * 5000 + b"\n", 1, 4, id="5000-digit-int"),
]


@pytest.mark.parametrize(("content", "line", "column"), CRASHERS)
def test_a_bad_scalar_is_a_dialplan_error_at_its_place(
    tmp_path: Path, content: bytes, line: int, column: int
) -> None:
    path = write(tmp_path, content)
    with pytest.raises(DialplanError) as info:
        load_dialplan(path)
    (problem,) = info.value.problems
    assert (problem.line, problem.column) == (line, column)
    assert "\n" not in str(problem)


def test_parse_yaml_of_text_with_a_lone_surrogate() -> None:
    with pytest.raises(DialplanError) as info:
        parse_yaml("a: \ud800\n", file="x.yaml")
    assert len(info.value.problems) == 1


def test_a_key_with_a_line_break_still_gives_one_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        b'prompts: p\ninitial: main\n"a\\nb": 1\nstates:\n  main: {kind: hangup}\n',
    )
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "p.yaml").write_text("apology: Fehler.\n")
    assert one_problem(path).startswith(f"{path}:3:1: ")


def test_two_documents_say_only_one_is_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, b"a: 1\n---\nb: 2\n")
    assert "single document" in one_problem(path).removeprefix(str(path))


# --- fuzzing ----------------------------------------------------------------------------
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def check_source_or_error(data: bytes | str) -> None:
    try:
        source = parse_yaml(data, file="fuzz.yaml")
    except DialplanError as exc:
        assert exc.problems
        assert all("\n" not in str(p) for p in exc.problems)
    else:
        assert isinstance(source, Source)


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes_give_a_dialplan_error_or_data(data: bytes) -> None:
    check_source_or_error(data)


@FUZZ
@given(st.text(max_size=300))
def test_any_text_gives_a_dialplan_error_or_data(text: str) -> None:
    check_source_or_error(text)
    check_source_or_error(text.encode("utf-8"))


YAMLISH = st.text(alphabet="ab01:-[]{}&*!?#|>'\"%@ \n\t,.~<", max_size=200)


@FUZZ
@given(YAMLISH)
def test_yaml_punctuation_gives_a_dialplan_error_or_data(text: str) -> None:
    check_source_or_error(text)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "p").mkdir()
    (folder / "p" / "p.yaml").write_text("hi: Hallo.\napology: Fehler.\n")
    return folder


def load_or_error(path: Path) -> None:
    try:
        load_dialplan(path)
    except DialplanError as exc:
        assert exc.problems
        assert all(p.severity == "error" for p in exc.problems)


@FUZZ
@given(st.binary(max_size=300) | YAMLISH.map(str.encode))
def test_any_file_content_loads_or_gives_dialplan_errors(fuzz_dir: Path, data: bytes) -> None:
    path = fuzz_dir / "d.yaml"
    path.write_bytes(data)
    load_or_error(path)


@FUZZ
@given(st.text(alphabet="abmin01:-[]{}'\"# \n,*", max_size=150))
def test_any_states_section_loads_or_gives_dialplan_errors(fuzz_dir: Path, text: str) -> None:
    path = fuzz_dir / "d.yaml"
    path.write_text("prompts: p\ninitial: main\nstates:\n" + text, encoding="utf-8")
    load_or_error(path)


NAMES = st.sampled_from(
    ["main", "bye", "x", "kind", "next", "prompt", "prompts", "options", "on", "hook",
     "into", "timeout", "terminator", "max_noinput", "on_max_noinput", "on_max_nomatch",
     "entry", "cases", "when", "goto", "otherwise", "id", "params", "1", "*1", "target"]
)  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False, width=32)
    | NAMES
    | st.sampled_from(["menu", "play", "hangup", "action", "collect", "branch", "hi", "#"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(st.dictionaries(NAMES, VALUES, max_size=4), st.sampled_from(["main", "bye"]))
def test_any_structured_states_load_or_give_dialplan_errors(
    fuzz_dir: Path, states: dict[str, object], initial: str
) -> None:
    plan = {"prompts": "p", "initial": initial, "states": states}
    path = fuzz_dir / "d.yaml"
    path.write_text(yaml.safe_dump(plan), encoding="utf-8")
    load_or_error(path)
