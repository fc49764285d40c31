"""Scripted-call testing as public API: run scripts and scenario files, assert what the
caller heard, and measure transition coverage.

    from ivr.testing import simulate
    call = simulate("dialplans/demo.yaml", keys="2 12345# 1234", caller="+4917112345")
    assert_prompts(call, ["demo_welcome", "demo_menu", "demo_enter_account"], exact=False)

Scenario files (YAML) hold a dialplan path (relative to the file) and one or more
scenarios::

    dialplan: ../../dialplans/demo.yaml
    scenarios:
      - name: sales
        caller: "+4917112345"
        keys: "1"
        expect:
          outcome: transferred
          prompts: [demo_welcome, demo_menu, demo_connecting]   # exact order
          prompts_include: [demo_connecting]                     # subsequence
          prompts_exclude: [apology]
          lines_include: [{type: transfer, target: "sip:sales@127.0.0.1"}]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ivr.callcontrol import Connect
from ivr.commands import Command, Dial, PullCall, Transfer
from ivr.dialogue import Engine, coverage_listener
from ivr.dialplan.loader import load_dialplan
from ivr.dialplan.model import Dialplan
from ivr.errors import DialplanError, IvrError, Problem
from ivr.extras import extra_of
from ivr.hooks import ContextError, check_engine_context
from ivr.prompts.durations import PromptDurations
from ivr.session import Session
from ivr.sim import (
    OUTCOMES,
    REFERENCE_START,
    SimCall,
    SimulationError,
    Simulator,
    format_transcript,
    parse_script,
)
from ivr.validation import AwareTime, did_you_mean, problems_of
from ivr.yaml_source import Path_, Source, read_yaml

EngineFactory = Callable[[Path, Path | None], Engine]


def audio_warnings(plan: Dialplan) -> list[Problem]:
    """Warnings about the dialplan's prompt audio: prompts without rendered audio (when
    anything was rendered at all), recordings without a prompt text. None without the
    audio extra (no audio to look at)."""
    library = _audio_library()
    if library is None:
        return []
    audio = library.PromptAudio(plan.catalog)
    warnings = [
        Problem(
            f"recording {path.name} has no prompt text in the catalog",
            file=str(path),
            severity="warning",
        )
        for path in audio.orphan_recordings()
    ]
    if not audio.cache_dir.is_dir():
        return warnings  # nothing rendered yet: durations are estimated, say nothing
    used = {ref.id for state in plan.states.values() for _path, ref in state.prompt_refs()}
    missing = sorted({name.split("#")[0] for name in audio.missing()} & used)
    if missing:
        warnings.append(
            Problem(
                f"{len(missing)} prompts have no rendered audio ({', '.join(missing[:5])}"
                f"{', ...' if len(missing) > 5 else ''}): run `ivr prompts render`",
                file=plan.file,
                severity="warning",
            )
        )
    return warnings


def durations_for(engine: Engine) -> Callable[[str, Mapping[str, Any]], float]:
    """Prompt durations for the simulator: rendered audio when cached, else estimated
    (always without the audio extra)."""
    catalog = engine.dialplan.catalog
    library = _audio_library()
    if library is None or not library.default_cache_dir(catalog).is_dir():
        return PromptDurations(catalog, None)
    return PromptDurations(catalog, library.PromptAudio(catalog).seconds)


def _audio_library() -> ModuleType | None:
    """:mod:`ivr.audio.library`, or None without the audio extra."""
    try:
        from ivr.audio import library
    except ImportError as exc:
        if extra_of(exc) != "audio":
            raise
        return None
    return library


def default_engine(dialplan: Path, portal: Path | None = None) -> Engine:
    """Build an engine for ``dialplan`` (with the portal domain when ``portal`` is given;
    lockouts then live in memory, on the simulator's virtual clock)."""
    if portal is not None:
        from ivr.portal.services import portal_engine  # the portal is a layer on top

        engine = portal_engine(dialplan, portal)
    else:
        engine = Engine(load_dialplan(dialplan))
    check_engine_context(engine)
    return engine


def needs_portal(error: ContextError) -> bool:
    """True when what the hooks need is what a portal configuration gives."""
    from ivr.portal.services import PortalServices

    return any(issubclass(PortalServices, needed) for needed in error.needs)


def simulate(
    dialplan: str | Path | Engine,
    *,
    keys: str | Iterable[str] = "",
    caller: str,
    called: str = "",
    portal: str | Path | None = None,
) -> SimCall:
    """Run one scripted call and return its transcript."""
    engine = (
        dialplan
        if isinstance(dialplan, Engine)
        else default_engine(Path(dialplan), Path(portal) if portal else None)
    )
    return Simulator(engine, durations=durations_for(engine)).run(
        keys, caller=caller, called=called
    )


# --- assertions --------------------------------------------------------------------
class TranscriptMismatch(AssertionError):
    """A scripted call did not go as expected; the message shows both transcripts."""


def is_subsequence(wanted: Sequence[Any], actual: Sequence[Any]) -> bool:
    """True when ``wanted`` appears in ``actual`` in order (gaps allowed)."""
    it = iter(actual)
    return all(any(item == have for have in it) for item in wanted)


def _line_matches(wanted: dict[str, Any], line: dict[str, Any]) -> bool:
    return all(line.get(k) == v for k, v in wanted.items())


def check_call(call: SimCall, expect: Expectation) -> list[str]:
    """Every way ``call`` differs from ``expect`` (empty when it matches)."""
    failures: list[str] = []
    heard = call.prompts()
    if expect.outcome is not None and call.outcome != expect.outcome:
        failures.append(f"outcome: expected {expect.outcome!r}, got {call.outcome!r}")
    if expect.prompts is not None and heard != expect.prompts:
        failures.append(f"prompts: expected exactly {expect.prompts}, heard {heard}")
    if expect.prompts_include and not is_subsequence(expect.prompts_include, heard):
        failures.append(f"prompts: expected {expect.prompts_include} in order, heard {heard}")
    for prompt in expect.prompts_exclude:
        if prompt in heard:
            failures.append(f"prompts: {prompt!r} was heard but must not be")
    lines = iter(call.lines)
    for wanted in expect.lines_include:
        if not any(_line_matches(wanted, line) for line in lines):
            failures.append(f"lines: no line matching {wanted} (in order)")
            break
    return failures


def assert_call(call: SimCall, **expect: Any) -> None:
    """Assert a call against expectations (same keys as a scenario's ``expect``)."""
    failures = check_call(call, Expectation.model_validate(expect))
    if failures:
        raise TranscriptMismatch(_report(failures, call))


def assert_prompts(call: SimCall, prompts: list[str], *, exact: bool = True) -> None:
    """Assert the prompts heard: exactly (default) or as a subsequence."""
    assert_call(call, **({"prompts": prompts} if exact else {"prompts_include": prompts}))


def _report(failures: list[str], call: SimCall) -> str:
    return "\n".join([*failures, "actual transcript:", format_transcript(call.lines)])


# --- scenario files ------------------------------------------------------------------
#: results a scenario may script for a transfer, pull or dial (``call_control``)
CallControlResultName = Literal[
    "connected", "failed", "busy", "not_found", "unavailable", "no_answer", "blocked"
]
_COMMAND_KINDS = {Transfer: "transfer", PullCall: "pull", Dial: "dial"}


class Expectation(BaseModel):
    """What a scripted call must produce."""

    model_config = ConfigDict(extra="forbid")

    outcome: str | None = Field(default=None, description=f"one of {', '.join(OUTCOMES)}")
    prompts: list[str] | None = Field(default=None, description="exact prompt ids, in order")
    prompts_include: list[str] = Field(default_factory=list, description="a subsequence")
    prompts_exclude: list[str] = Field(default_factory=list, description="never heard")
    lines_include: list[dict[str, Any]] = Field(
        default_factory=list, description="transcript lines (partial match), in order"
    )

    @field_validator("outcome")
    @classmethod
    def _known_outcome(cls, value: str | None) -> str | None:
        if value is not None and value not in OUTCOMES:
            raise ValueError(
                f"unknown outcome {value!r}{did_you_mean(value, OUTCOMES)}"
                f" (one of: {', '.join(OUTCOMES)})"
            )
        return value


class Scenario(BaseModel):
    """One scripted call and what it must produce."""

    model_config = ConfigDict(extra="forbid")

    name: str
    caller: str
    called: str = ""
    keys: str = ""
    at: AwareTime | None = Field(
        default=None, description="when the call starts (ISO 8601 with offset)"
    )
    after: float | None = Field(
        default=None, ge=0, description="seconds after the previous call of the file ended"
    )
    call_control: dict[Literal["transfer", "pull", "dial"], CallControlResultName] = Field(
        default_factory=dict,
        description="how the PBX ends this call's transfer, pull or dial (instead of the "
        "simulated PBX), e.g. {transfer: busy}",
    )
    expect: Expectation = Field(default_factory=Expectation)

    @field_validator("keys")
    @classmethod
    def _tokens(cls, value: str) -> str:
        try:
            parse_script(value)
        except SimulationError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _one_start(self) -> Scenario:
        if self.at is not None and self.after is not None:
            raise ValueError("give either 'at' or 'after', not both")
        return self


class ScenarioFile(BaseModel):
    """A scenario file: the dialplan (and portal) under test and its scenarios."""

    model_config = ConfigDict(extra="forbid")

    dialplan: str = Field(description="the dialplan under test (relative to this file)")
    portal: str | None = Field(
        default=None, description="a portal configuration (relative to this file)"
    )
    scenarios: list[Scenario] = Field(min_length=1)


class _SingleScenarioFile(Scenario):
    """A file holding one scenario at its top level, with the dialplan (and portal)."""

    dialplan: str
    portal: str | None = None

    def as_file(self) -> ScenarioFile:
        scenario = Scenario.model_validate(self.model_dump(exclude={"dialplan", "portal"}))
        return ScenarioFile(dialplan=self.dialplan, portal=self.portal, scenarios=[scenario])


@dataclass(slots=True)
class ScenarioResult:
    """The result of one scenario."""

    name: str
    file: str
    line: int
    failures: list[str]
    call: SimCall | None = None
    #: why the file could not be used at all (then ``failures`` repeats them as text)
    problems: list[Problem] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when the scenario produced what it expects."""
        return not self.failures

    def report(self) -> str:
        """Expected vs actual, for a failure message."""
        if self.call is None:
            return "\n".join(self.failures)
        return _report(self.failures, self.call)


@dataclass(slots=True)
class ScenarioRunner:
    """Runs scenario files and counts transition coverage per dialplan.

    Each file gets engines of its own, so state that lives in an engine's context
    (e.g. the portal's PIN lockouts) carries from one scenario of a file to the next,
    never across files. Within a file the calls follow each other on one virtual clock:
    a scenario starts ``after`` seconds after the previous one ended, or ``at`` a time.
    """

    engine_factory: EngineFactory = default_engine
    fired: dict[str, Counter[str]] = field(default_factory=dict)
    engines: dict[str, Engine] = field(default_factory=dict)
    _durations: dict[str, Callable[[str, Mapping[str, Any]], float]] = field(default_factory=dict)

    def engine(self, dialplan: Path, portal: Path | None) -> Engine:
        """A new engine for this dialplan and portal, counted into the coverage.

        Raises :class:`ivr.hooks.ContextError` when the dialplan's hooks need a context
        the engine was not given (a portal dialplan without a portal configuration)."""
        engine = self.engine_factory(dialplan.resolve(), portal.resolve() if portal else None)
        check_engine_context(engine)
        key = engine.dialplan.file
        counter = self.fired.setdefault(key, Counter())
        engine.listeners.append(coverage_listener(counter))
        self.engines.setdefault(key, engine)
        return engine

    def load_file(self, path: str | Path) -> LoadedScenarios:
        """Read ``path`` and build its engine: the file ready to run.

        Raises :class:`DialplanError` with every reason the file cannot be used, each at
        ``file:line:col`` (the scenario file's, or the dialplan's or portal's it names).
        """
        path = Path(path)
        spec, lines, source = _load(path)
        dialplan = path.parent / spec.dialplan
        portal = (path.parent / spec.portal) if spec.portal else None
        try:
            engine = self.engine(dialplan, portal)
        except ContextError as exc:
            if spec.portal is None and needs_portal(exc):
                message = (
                    f"{spec.dialplan} needs a portal configuration: add 'portal: CONFIG' "
                    f"to the scenario file ({exc})"
                )
            else:
                message = (
                    f"{spec.dialplan}: {exc}, which a scenario file cannot give "
                    "(run it with ivr.testing.ScenarioRunner(engine_factory=...))"
                )
            raise DialplanError(source.problem(("dialplan",), message)) from None
        except DialplanError:
            raise
        except IvrError as exc:  # e.g. a portal whose files do not fit together
            raise DialplanError(
                source.problem(("portal",) if portal else ("dialplan",), str(exc))
            ) from None
        return LoadedScenarios(path, spec, lines, engine)

    def run_file(self, path: str | Path) -> list[ScenarioResult]:
        """Run every scenario in ``path``, in order. A file that cannot be used is one
        failed result whose ``problems`` say why (:meth:`load_file` raises instead)."""
        path = Path(path)
        try:
            loaded = self.load_file(path)
        except DialplanError as exc:
            line = exc.problems[0].line if exc.problems else 0
            return [
                ScenarioResult(
                    path.name, str(path), line, [str(p) for p in exc.problems], None, exc.problems
                )
            ]
        return self.run_loaded(loaded)

    def run_loaded(self, loaded: LoadedScenarios) -> list[ScenarioResult]:
        """Run the scenarios of a loaded file, in order, on one virtual clock."""
        spec, lines, engine, path = loaded.spec, loaded.lines, loaded.engine, loaded.path
        results = []
        clock = REFERENCE_START
        for scenario, line in zip(spec.scenarios, lines, strict=True):
            if scenario.at is not None:
                clock = scenario.at.timestamp()
            else:
                clock += scenario.after or 0.0
            result = self.run(engine, scenario, str(path), line, start=clock)
            if result.call is not None:
                clock = result.call.ended_at
            results.append(result)
        return results

    def run(
        self,
        engine: Engine,
        scenario: Scenario,
        file: str = "",
        line: int = 0,
        *,
        start: float = REFERENCE_START,
    ) -> ScenarioResult:
        """Run one scenario on ``engine``, starting at virtual time ``start``."""
        try:
            call = Simulator(
                engine,
                durations=self.durations(engine),
                effects=scripted_effects(engine, scenario.call_control),
            ).run(
                parse_script(scenario.keys),
                caller=scenario.caller,
                called=scenario.called,
                call_id=scenario.name,
                start=start,
            )
        except SimulationError as exc:
            return ScenarioResult(scenario.name, file, line, [str(exc)])
        return ScenarioResult(scenario.name, file, line, check_call(call, scenario.expect), call)

    def durations(self, engine: Engine) -> Callable[[str, Mapping[str, Any]], float]:
        """Prompt durations for ``engine``'s catalog (rendered audio when cached)."""
        key = engine.dialplan.catalog.directory
        if key not in self._durations:
            self._durations[key] = durations_for(engine)
        return self._durations[key]

    def coverage(self) -> list[Coverage]:
        """Transition coverage of everything run so far, per dialplan."""
        return [Coverage.of(engine, self.fired[key]) for key, engine in self.engines.items()]


@dataclass(frozen=True, slots=True)
class LoadedScenarios:
    """A scenario file read and validated, with the engine its scenarios run on."""

    path: Path
    spec: ScenarioFile
    lines: list[int]
    engine: Engine


def scripted_effects(
    engine: Engine, results: Mapping[Any, str]
) -> Callable[[Command, Session], Connect] | None:
    """The engine context's call control, with ``results`` ({kind: result}) answering
    for the kinds they name; None (the simulator's default) when there are none."""
    if not results:
        return None
    apply = getattr(engine.context, "apply", None)

    def effects(command: Command, session: Session) -> Connect:
        kind = _COMMAND_KINDS.get(type(command), "")
        if kind in results:
            return results[kind]
        return apply(command, session) if apply is not None else None

    return effects


def load_scenarios(path: str | Path) -> tuple[ScenarioFile, list[int]]:
    """Read and validate a scenario file; returns it and each scenario's line.

    Raises :class:`DialplanError` with every problem at ``file:line:col``: YAML errors,
    unknown keys (with did-you-mean), bad values (key tokens, ``at`` without a UTC
    offset, an unknown outcome), and a dialplan or portal file that does not exist.
    """
    spec, lines, _source = _load(Path(path))
    return spec, lines


def _load(path: Path) -> tuple[ScenarioFile, list[int], Source]:
    try:
        source = read_yaml(path)
    except DialplanError as exc:  # a file-level problem still gets a place: the start
        raise DialplanError([_placed(p) for p in exc.problems]) from None
    data = source.data
    if not isinstance(data, dict):
        raise DialplanError(source.problem((), "a scenario file must be a mapping"))
    if "scenarios" in data or did_you_mean("scenarios", [str(k) for k in data]):
        model: type[ScenarioFile | _SingleScenarioFile] = ScenarioFile
    else:  # a file with one scenario at its top level
        model = _SingleScenarioFile
        data = {"name": path.stem, **data}
    try:
        validated = model.model_validate(data)
    except ValidationError as exc:
        raise DialplanError(problems_of(source, exc, model)) from None
    spec = validated.as_file() if isinstance(validated, _SingleScenarioFile) else validated
    missing = [
        source.problem((key,), f"no such file {(path.parent / name).resolve()}")
        for key, name in (("dialplan", spec.dialplan), ("portal", spec.portal))
        if name is not None and not (path.parent / name).is_file()
    ]
    if missing:
        raise DialplanError(missing)
    where: list[Path_] = [("scenarios", i) for i in range(len(spec.scenarios))]
    if model is _SingleScenarioFile:
        where = [()]
    lines = [source.values.get(at, source.values[()]).line for at in where]
    return spec, lines, source


def _placed(problem: Problem) -> Problem:
    """``problem`` at line 1, column 1 when it has no place of its own (an empty file)."""
    if problem.line:
        return problem
    return Problem(problem.message, problem.file, 1, 1, problem.path, severity=problem.severity)


# --- coverage ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Coverage:
    """Which states and transitions of a dialplan the scripted calls exercised."""

    dialplan: str
    states: tuple[str, ...]
    states_hit: frozenset[str]
    transitions: tuple[tuple[str, str, str], ...]
    transitions_hit: frozenset[str]

    @classmethod
    def of(cls, engine: Engine, fired: Counter[str]) -> Coverage:
        """Coverage of ``engine`` given the trigger counts ``fired``."""
        triggers = tuple(t for t in engine.triggers() if t[0] != "start")
        hit_states = {dest for name, _src, dest in engine.triggers() if fired[name]}
        return cls(
            dialplan=engine.dialplan.file,
            states=tuple(engine.dialplan.states),
            states_hit=frozenset(hit_states),
            transitions=triggers,
            transitions_hit=frozenset(name for name, *_ in triggers if fired[name]),
        )

    @property
    def state_ratio(self) -> float:
        """Share of states entered at least once."""
        return len(self.states_hit & set(self.states)) / max(1, len(self.states))

    @property
    def transition_ratio(self) -> float:
        """Share of transitions taken at least once."""
        return len(self.transitions_hit) / max(1, len(self.transitions))

    def report(self) -> str:
        """A readable coverage report listing what was missed."""
        entered = len(self.states_hit & set(self.states))
        lines = [
            f"coverage of {_shown(self.dialplan)}: states {entered}/"
            f"{len(self.states)} ({self.state_ratio:.0%}), transitions "
            f"{len(self.transitions_hit)}/{len(self.transitions)} ({self.transition_ratio:.0%})"
        ]
        lines += [f"  state never entered: {s}" for s in self.states if s not in self.states_hit]
        lines += [
            f"  transition never taken: {src} --{name.partition('>')[2]}--> {dest}"
            for name, src, dest in self.transitions
            if name not in self.transitions_hit
        ]
        return "\n".join(lines)


def _shown(path: str) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


__all__ = [
    "Coverage",
    "Expectation",
    "LoadedScenarios",
    "Problem",
    "Scenario",
    "ScenarioFile",
    "ScenarioResult",
    "ScenarioRunner",
    "TranscriptMismatch",
    "assert_call",
    "assert_prompts",
    "check_call",
    "is_subsequence",
    "load_scenarios",
    "simulate",
]
