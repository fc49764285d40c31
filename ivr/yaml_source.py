"""Read a YAML file into plain Python data plus the file position of every value.

PyYAML's composer keeps a start mark on every node; we walk the node graph ourselves so
that duplicate keys are errors, aliases cannot explode ("billion laughs"), and any
value can be traced back to ``file:line:col``.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ivr.errors import DialplanError, Problem

MAX_FILE_BYTES = 1 << 20
MAX_NODES = 100_000

# the C composer (libyaml) is ~10x faster; the pure-Python one is the fallback
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Path_ = tuple[str | int, ...]
_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


@dataclass(frozen=True, slots=True)
class Position:
    """1-based line and column of a node in a file."""

    line: int
    column: int


@dataclass(slots=True)
class Source:
    """Plain data from one YAML file and where each value (and mapping key) stands."""

    file: str
    data: Any
    values: dict[Path_, Position] = field(default_factory=dict)
    keys: dict[Path_, Position] = field(default_factory=dict)

    def problem(
        self, path: Path_, message: str, *, at_key: bool = False, severity: str = "error"
    ) -> Problem:
        """A Problem at ``path``: the key's position if ``at_key``, else the value's.

        Falls back to the nearest enclosing node that has a position.
        """
        table = self.keys if at_key else self.values
        probe = self._in_file(path)
        pos = table.get(probe)
        while pos is None and probe:
            probe = probe[:-1]
            pos = self.values.get(probe)
        return Problem(
            message=message,
            file=self.file,
            line=pos.line if pos else 0,
            column=pos.column if pos else 0,
            path=format_path(path),
            severity=severity,
        )

    def _in_file(self, path: Path_) -> Path_:
        """``path`` as written in the file: the index a model puts around a single value
        (``prompt: hi`` read as a list of one) is dropped. Parts past the file's data
        stay, so the lookup falls back to the nearest enclosing node."""
        written: list[str | int] = []
        node = self.data
        for i, part in enumerate(path):
            listed = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
            if listed or (isinstance(node, dict) and part in node):
                node = node[part]
            elif part == 0 and not isinstance(node, list):
                continue
            else:
                return (*written, *path[i:])
            written.append(part)
        return tuple(written)


def format_path(path: Path_) -> str:
    """``('states', 'main', 'options', '9')`` -> ``states.main.options.9``."""
    return ".".join(_shown(p) for p in path)


def _shown(part: str | int) -> str:
    text = str(part)
    return text if text.isprintable() else repr(text)[1:-1]


def _one_line(file: str, message: str, mark: Any = None) -> DialplanError:
    if mark is not None:
        return DialplanError(
            Problem(message, file=file, line=mark.line + 1, column=mark.column + 1)
        )
    return DialplanError(Problem(message, file=file))


def read_yaml(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> Source:
    """Load ``path`` into a :class:`Source`; every failure is one :class:`DialplanError`."""
    file = str(path)
    try:
        info = Path(path).stat()
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(info.st_mode):
            raise _one_line(file, "not a regular file (a pipe or device?)")
        if info.st_size > max_bytes:
            raise _one_line(file, f"file is {info.st_size} bytes; the limit is {max_bytes} bytes")
        with Path(path).open("rb") as handle:
            raw = handle.read(max_bytes + 1)  # the file may grow after stat()
        if len(raw) > max_bytes:
            raise _one_line(file, f"file is over the limit of {max_bytes} bytes")
    except DialplanError:
        raise
    except IsADirectoryError:
        raise _one_line(file, "is a directory, not a YAML file") from None
    except OSError as exc:
        raise _one_line(file, f"cannot read: {exc.strerror or exc}") from None
    return parse_yaml(raw, file=file)


def parse_yaml(raw: bytes | str, *, file: str = "<string>") -> Source:
    """Parse YAML text (see :func:`read_yaml`)."""
    if isinstance(raw, bytes):
        if b"\x00" in raw:
            raise _one_line(file, "not a YAML text file (contains NUL bytes)")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _one_line(file, f"not UTF-8 text (bad byte at offset {exc.start})") from None
    else:
        text = raw
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _one_line(file, f"not UTF-8 text (bad character at offset {exc.start})") from None
    if not text.strip():
        raise _one_line(file, "file is empty")
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        if message.startswith("but found another document"):
            message = "expected a single document, but found another document"
        if _unclosed_quote(exc):  # the end of the file is no place to fix it
            mark = exc.context_mark
            message += ": the quote that begins here is never closed"
        raise _one_line(file, f"YAML syntax error: {message}", mark) from None
    except yaml.reader.ReaderError as exc:
        what = f"character #x{exc.character:04x}" if isinstance(exc.character, int) else "byte"
        raise _one_line(
            file, f"not a YAML text file: unacceptable {what} at offset {exc.position}"
        ) from None
    except yaml.YAMLError as exc:
        raise _one_line(file, f"YAML error: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise _one_line(file, "YAML nested too deeply") from None
    if node is None:
        raise _one_line(file, "file is empty (only comments)")
    source = Source(file=file, data=None)
    walker = _Walker(source)
    source.data = walker.value(node, ())
    return source


def _unclosed_quote(exc: yaml.MarkedYAMLError) -> bool:
    """True when a quoted scalar runs on to the end of the file."""
    return (
        exc.context_mark is not None
        and "quoted scalar" in str(exc.context)
        and "end of stream" in str(exc.problem)
    )


class _Walker:
    """Turns a node graph into plain data, recording positions and counting nodes."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.count = 0
        self.constructor = yaml.SafeLoader("")  # only for scalar conversion

    def value(self, node: yaml.Node, path: Path_) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _one_line(
                self.source.file,
                f"more than {MAX_NODES} YAML nodes after alias expansion (an alias bomb?)",
                node.start_mark,
            )
        if len(path) > 64:
            raise _one_line(self.source.file, "YAML nested too deeply", node.start_mark)
        self.source.values.setdefault(path, _pos(node))
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _COLLECTION_TAGS:
            raise _one_line(self.source.file, f"unsupported YAML tag {node.tag}", node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except Exception as exc:  # PyYAML raises ValueError, KeyError, ... for bad scalars
            detail = getattr(exc, "problem", None) or f"{type(exc).__name__}: {exc}"
            message = " ".join(str(detail).split())[:200]
            raise _one_line(self.source.file, f"bad value: {message}", node.start_mark) from None

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        explicit: set[str] = set()
        pairs = list(node.value)
        merged = [pair for pair in pairs if pair[0].tag == "tag:yaml.org,2002:merge"]
        for key_node, value_node in merged:  # '<<: *defaults' — explicit keys win
            base = self.value(value_node, path)
            bases = base if isinstance(base, list) else [base]
            for item in bases:
                if not isinstance(item, dict):
                    raise _one_line(
                        self.source.file, "'<<' must merge a mapping", key_node.start_mark
                    )
                for k, v in item.items():
                    result.setdefault(k, v)
        for key_node, value_node in pairs:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise _one_line(
                    self.source.file, "mapping keys must be plain scalars", key_node.start_mark
                )
            key = self._scalar(key_node)
            key = key if isinstance(key, str) else str(key_node.value)
            child = (*path, key)
            if key in explicit:
                first = self.source.keys[child]
                raise DialplanError(
                    Problem(
                        f"duplicate key {key!r} (first defined at line {first.line})",
                        file=self.source.file,
                        line=key_node.start_mark.line + 1,
                        column=key_node.start_mark.column + 1,
                        path=format_path(child),
                    )
                )
            explicit.add(key)
            self.source.keys[child] = _pos(key_node)
            result[key] = self.value(value_node, child)
        return result


def _pos(node: yaml.Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)
