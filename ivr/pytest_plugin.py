"""pytest plugin (entry point ``pytest11``): a thin layer over :mod:`ivr.testing`.

- Collects scenario files **only where asked**: files named ``*.ivr.yaml`` anywhere,
  and the ``*.yaml`` files under the paths of the ini option ``ivr_scenarios``
  (``ivr_scenarios = tests/scenarios`` in ``[tool.pytest.ini_options]``, relative to
  the ini file). Each scenario becomes a test item; a failure shows expected vs actual
  transcript. A file that cannot be used (as ``ivr test`` exits 2 for) is a collection
  error listing each problem at ``file:line:col``, never a failed scenario. Other
  projects' ``scenarios/*.yaml`` are left alone.
- Fixtures ``ivr_runner`` and ``ivr_simulate``: run a scripted call in a test, engines
  cached per session.

The session's runner and what it loaded live in ``config.stash`` (no module state).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ivr.errors import DialplanError
from ivr.sim import SimCall
from ivr.testing import LoadedScenarios, ScenarioResult, ScenarioRunner

#: the ini option naming the scenario directories (or files)
INI_OPTION = "ivr_scenarios"
#: a scenario file anywhere is collected when its name ends so
SUFFIX = ".ivr.yaml"


@dataclass
class _Session:
    """What the plugin keeps for one pytest session."""

    runner: ScenarioRunner = field(default_factory=ScenarioRunner)
    roots: list[Path] = field(default_factory=list)
    loaded: dict[Path, LoadedScenarios] = field(default_factory=dict)
    results: dict[Path, dict[str, ScenarioResult]] = field(default_factory=dict)


_SESSION = pytest.StashKey[_Session]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        INI_OPTION,
        type="paths",
        default=[],
        help=f"directories (or files) whose *.yaml are ivr scenario files; files named "
        f"*{SUFFIX} are collected anywhere",
    )


def pytest_configure(config: pytest.Config) -> None:
    roots = [Path(p).resolve() for p in config.getini(INI_OPTION)]
    config.stash[_SESSION] = _Session(roots=roots)


def _session(config: pytest.Config) -> _Session:
    return config.stash[_SESSION]


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.name.endswith(SUFFIX):
        return ScenarioFileItem.from_parent(parent, path=file_path)
    if file_path.suffix != ".yaml":
        return None
    resolved = file_path.resolve()
    roots = _session(parent.config).roots
    if any(resolved == root or resolved.is_relative_to(root) for root in roots):
        return ScenarioFileItem.from_parent(parent, path=file_path)
    return None


class ScenarioFileItem(pytest.File):
    """A scenario file: one test per scenario."""

    def collect(self) -> Iterator[pytest.Item]:
        try:
            loaded = _session(self.config).runner.load_file(self.path)
        except DialplanError as exc:
            raise self.CollectError(str(exc)) from None
        _session(self.config).loaded[self.path] = loaded
        for scenario, line in zip(loaded.spec.scenarios, loaded.lines, strict=True):
            yield ScenarioItem.from_parent(self, name=scenario.name, line=line)


class ScenarioItem(pytest.Item):
    """One scenario of a scenario file."""

    def __init__(self, *, line: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.line = line

    def runtest(self) -> None:
        session = _session(self.config)
        if self.path not in session.results:
            loaded = session.loaded.pop(self.path, None)
            runner = session.runner
            results = runner.run_loaded(loaded) if loaded else runner.run_file(self.path)
            session.results[self.path] = {r.name: r for r in results}
        result = session.results[self.path].get(self.name)
        if result is None:
            raise ScenarioFailed(f"scenario {self.name!r} was not run")
        if not result.passed:
            raise ScenarioFailed(result.report(), result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioFailed):
            return f"scenario {self.name!r} failed:\n{excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, max(0, self.line - 1), f"scenario: {self.name}"


class ScenarioFailed(AssertionError):
    """A scenario did not produce what it expects."""

    def __init__(self, message: str, result: ScenarioResult | None = None) -> None:
        super().__init__(message)
        self.result = result


@pytest.fixture(scope="session")
def ivr_runner(pytestconfig: pytest.Config) -> ScenarioRunner:
    """The session's scenario runner (engines built once per dialplan)."""
    return _session(pytestconfig).runner


@pytest.fixture
def ivr_simulate(ivr_runner: ScenarioRunner) -> Callable[..., SimCall]:
    """``ivr_simulate(dialplan, keys="1 2#", caller="+49...", portal=None)`` -> transcript.

    Calls within one test share their engine (so e.g. PIN lockouts carry over) and
    follow each other on one virtual clock; ``after=SECONDS`` waits between calls.
    """
    from ivr.dialogue import Engine
    from ivr.sim import REFERENCE_START, Simulator

    engines: dict[tuple[Path, Path | None], Engine] = {}
    clock = [REFERENCE_START]

    def run(
        dialplan: str | Path,
        *,
        keys: str = "",
        caller: str,
        called: str = "",
        portal: str | Path | None = None,
        after: float = 0.0,
    ) -> SimCall:
        key = (Path(dialplan), Path(portal) if portal else None)
        if key not in engines:
            engines[key] = ivr_runner.engine(*key)
        call = Simulator(engines[key]).run(
            keys, caller=caller, called=called, start=clock[0] + after
        )
        clock[0] = call.ended_at
        return call

    return run
