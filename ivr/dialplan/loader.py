"""Load a dialplan file: YAML with positions -> validated :class:`Dialplan`.

Every problem is collected and reported together with ``file:line:col`` and a context
path; warnings (unreachable states, dead ends, overlapping codes) ride on the result.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ivr.dialplan import checks
from ivr.dialplan.model import Defaults, Dialplan, DialplanHeader
from ivr.errors import DialplanError, Problem
from ivr.hooks import Hooks, import_hooks
from ivr.prompts.catalog import CatalogNotFoundError, PromptCatalog, load_catalog
from ivr.states import KINDS
from ivr.states.base import State
from ivr.validation import did_you_mean, placed, problems_of
from ivr.yaml_source import Path_, Source, read_yaml

STATE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def load_dialplan(
    path: str | Path,
    *,
    hooks: Hooks | None = None,
    catalog: PromptCatalog | None = None,
) -> Dialplan:
    """Load and validate ``path``. Raises :class:`DialplanError` with every problem.

    ``hooks`` overrides the registry the file names under ``hooks:``; ``catalog``
    overrides the prompt directory it names under ``prompts:``.
    """
    source = read_yaml(path)
    return _Loader(source, hooks, catalog).load()


class _Loader:
    def __init__(self, source: Source, hooks: Hooks | None, catalog: PromptCatalog | None) -> None:
        self.source = source
        self.hooks = hooks
        self.catalog = catalog
        self.problems: list[Problem] = []
        self._seen: set[Problem] = set()
        #: per state, where its fields taken from ``defaults`` are written
        self.origins: dict[str, dict[str, Path_]] = {}

    def report(self, problems: Iterable[Problem]) -> None:
        """Add ``problems``, each once: a value in ``defaults`` is one mistake, however
        many states inherit it."""
        for problem in problems:
            if problem not in self._seen:
                self._seen.add(problem)
                self.problems.append(problem)

    def error(self, path: Path_, message: str, *, at_key: bool = False) -> None:
        self.report([self.source.problem(path, message, at_key=at_key)])

    def load(self) -> Dialplan:
        data = self.source.data
        if not isinstance(data, dict):
            raise DialplanError(
                self.source.problem((), f"top level must be a mapping, not {_type_name(data)}")
            )
        header_data = {k: v for k, v in data.items() if k not in ("defaults", "states")}
        header = self._validate(DialplanHeader, header_data, ())
        defaults = self._defaults(data.get("defaults"))
        raw_states = data.get("states")
        if not isinstance(raw_states, dict) or not raw_states:
            self.error(("states",), "a dialplan needs a mapping of states")
            raw_states = {}
        states: dict[str, State] = {}
        for name, raw in raw_states.items():
            if not name or not set(name) <= STATE_NAME_CHARS:
                self.error(
                    ("states", name), "state names use letters, digits, _ and -", at_key=True
                )
            state = self._state(name, raw, defaults)
            if state is not None:
                states[name] = state
        if header is None:  # still check the rest with the header's valid fields
            known = {k: v for k, v in header_data.items() if k in DialplanHeader.model_fields}
            try:
                header = DialplanHeader.model_validate(known)
            except ValidationError:
                raise DialplanError(self.problems) from None
        catalog = self.catalog or self._catalog(header.prompts)
        hooks = self.hooks if self.hooks is not None else self._hooks(header.hooks)
        self._cross_check(header, states, raw_states, catalog, hooks)
        if self.problems:
            raise DialplanError(self.problems)
        assert catalog is not None
        plan = Dialplan(
            name=header.name or Path(self.source.file).stem,
            file=self.source.file,
            language=header.language,
            catalog=catalog,
            initial=header.initial,
            states=states,
            hooks=hooks,
            apology=header.apology,
            source=self.source,
        )
        return checks.with_warnings(plan)

    def _validate(self, model: Any, data: dict[str, Any], path: Path_) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            self.report(problems_of(self.source, exc, model, path))
            return None

    def _defaults(self, raw: Any) -> dict[str, Any]:
        """``defaults``, checked where it is written, whether or not a state inherits it."""
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.error(("defaults",), f"must be a mapping, not {_type_name(raw)}")
            return {}
        self._validate(Defaults, raw, ("defaults",))
        return raw

    def _state(self, name: str, raw: Any, defaults: dict[str, Any]) -> State | None:
        path: Path_ = ("states", name)
        if not isinstance(raw, dict):
            self.error(path, f"a state must be a mapping, not {_type_name(raw)}")
            return None
        kind = raw.get("kind")
        if kind is None:
            self.error(path, f"missing 'kind' (one of: {', '.join(sorted(KINDS))})")
            return None
        cls = KINDS.get(kind) if isinstance(kind, str) else None
        if cls is None:
            self.error(
                (*path, "kind"),
                f"unknown kind {kind!r}{did_you_mean(str(kind), KINDS)}"
                f" (one of: {', '.join(sorted(KINDS))})",
            )
            return None
        data = dict(raw)
        origin = self.origins[name] = {}
        for key in cls.default_fields:
            if key not in data and key in defaults:
                data[key] = defaults[key]
                origin[key] = ("defaults", key)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:  # an inherited invalid default: report() drops it
            self.report(problems_of(self.source, exc, cls, path, origin))
            wrong = {str(err["loc"][0]) if err["loc"] else "" for err in exc.errors()}
        if not wrong <= set(origin):
            return None
        # only inherited defaults were wrong: the state without them still gets its
        # targets and prompts checked (its problems are reported, not the retry's)
        for key in wrong:
            del data[key], origin[key]
        try:
            return cls.model_validate(data)
        except ValidationError:
            return None

    def _catalog(self, directory: str) -> PromptCatalog | None:
        folder = Path(self.source.file).parent / directory
        try:
            return load_catalog(folder)
        except CatalogNotFoundError as exc:
            self.error(("prompts",), f"{exc.problems[0].message}: {exc.directory}")
        except DialplanError as exc:
            self.report(exc.problems)
        return None

    def _hooks(self, reference: str | None) -> Hooks:
        if reference is None:
            return Hooks()
        try:
            return import_hooks(reference)
        except Exception as exc:  # any import failure is the file's problem to report
            from ivr.extras import MissingExtra

            missing = (
                MissingExtra.of(exc, f"hooks {reference!r}")
                if isinstance(exc, ImportError)
                else None
            )
            why = str(missing) if missing is not None else f"cannot load hooks {reference!r}: {exc}"
            self.error(("hooks",), why)
            return Hooks()

    def _cross_check(
        self,
        header: DialplanHeader,
        states: dict[str, State],
        raw_states: dict[str, Any],
        catalog: PromptCatalog | None,
        hooks: Hooks,
    ) -> None:
        names = list(raw_states)
        if header.initial not in raw_states:
            self.error(
                ("initial",),
                f"unknown state {header.initial!r}{did_you_mean(header.initial, names)}",
            )
        for name, state in states.items():
            path: Path_ = ("states", name)
            origin = self.origins.get(name)
            for edge in state.edges():
                if edge.target not in raw_states:
                    self.error(
                        placed(path, edge.path, origin),
                        f"unknown state {edge.target!r}{did_you_mean(edge.target, names)}",
                    )
            for hook_path, hook in state.hook_names():
                if hook not in hooks:
                    known = (
                        f" (known: {', '.join(hooks)})" if len(hooks) else " (no hooks registered)"
                    )
                    hint = did_you_mean(hook, list(hooks)) or known
                    self.error(placed(path, hook_path, origin), f"unknown hook {hook!r}{hint}")
            if catalog is not None:
                for ref_path, ref in state.prompt_refs():
                    where = placed(path, ref_path, origin)
                    self._check_prompt(where, ref.id, set(ref.params), catalog)
        if catalog is not None and header.apology is not None:
            self._check_prompt(("apology",), header.apology, set(), catalog)

    def _check_prompt(
        self, path: Path_, prompt_id: str, given: set[str], catalog: PromptCatalog
    ) -> None:
        if prompt_id not in catalog:
            self.error(
                path,
                f"prompt {prompt_id!r} not in catalog {catalog.directory}"
                f"{did_you_mean(prompt_id, list(catalog))}",
            )
            return
        needed = set(catalog[prompt_id].params)
        for missing in sorted(needed - given):
            self.error(path, f"prompt {prompt_id!r} needs parameter {missing!r}")
        for extra in sorted(given - needed):
            self.error(path, f"prompt {prompt_id!r} has no parameter {extra!r}")


def _type_name(value: Any) -> str:
    return {
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
        type(None): "empty",
    }.get(type(value), type(value).__name__)
