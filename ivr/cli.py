"""The ``ivr`` command: check, simulate, test, schema, graph, serve, portal, prompts.

Exit codes: 0 success; 1 test failures (or warnings with ``--strict``); 2 errors in
the files given (dialplan, scenario, script) or bad usage.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ivr.dialplan.loader import load_dialplan
from ivr.errors import DialplanError, IvrError, Problem
from ivr.extras import DISTRIBUTION, MissingExtra, extra_of
from ivr.hooks import ContextError
from ivr.sim import REFERENCE_START, Simulator, format_transcript, parse_script
from ivr.testing import (
    ScenarioRunner,
    audio_warnings,
    default_engine,
    durations_for,
    needs_portal,
)

if TYPE_CHECKING:
    from ivr.audio.convert import Codec
    from ivr.audio.library import PromptAudio
    from ivr.portal.config import LoadedPortal
    from ivr.portal.directory import Employee, YamlDirectory
    from ivr.portal.lockout import LockoutStore

EXIT_FAILED = 1
EXIT_ERROR = 2


class _Group(click.Group):
    """Turns every IvrError into a one-line message and exit code 2, and so a missing
    optional package: the line names the extra that brings it."""

    #: subgroups are _Groups too
    group_class = type

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:  # the command as typed, for messages: `ivr portal locks`
            path = ctx.meta.setdefault(_COMMAND_PATH, [])
            path.append(command.name or name or "")
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DialplanError as exc:
            for problem in exc.problems:
                click.echo(str(problem), err=True)
            ctx.exit(EXIT_ERROR)
        except IvrError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_ERROR)
        except ImportError as exc:
            command = " ".join(["ivr", *ctx.meta.get(_COMMAND_PATH, [])])
            missing = MissingExtra.of(exc, f"`{command}`")
            if missing is None:
                raise
            click.echo(f"error: {missing}", err=True)
            ctx.exit(EXIT_ERROR)


_COMMAND_PATH = "ivr.command_path"


@click.group(cls=_Group)
@click.version_option(package_name=DISTRIBUTION)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="error",
    show_default=True,
    help="Log messages of this level and above to stderr.",
)
def main(log_level: str) -> None:
    """ivr — declarative voice menus: check, simulate and test dialplans."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper()),
        format="%(levelname)s %(name)s: %(message)s",
        force=True,
    )
    # transitions logs every state change at INFO: far too much for a serving portal
    logging.getLogger("transitions").setLevel(max(logging.WARNING, logging.getLogger().level))


@main.command()
@click.argument("dialplans", nargs=-1, type=click.Path(dir_okay=False))
@click.option(
    "--portal",
    type=click.Path(dir_okay=False),
    help="Also validate this portal configuration (and the directory it names) with them.",
)
@click.option("--strict", is_flag=True, help="Fail (exit 1) on warnings too.")
def check(dialplans: tuple[str, ...], portal: str | None, strict: bool) -> None:
    """Validate DIALPLANS (and a portal configuration): errors exit 2, warnings print.

    With --portal and no DIALPLANS: the portal dialplan that comes with the package.
    """
    if not dialplans:
        dialplans = (_dialplan_or_packaged(None, portal),)
    problems: list[Problem] = []
    hooks = None
    if portal is not None:
        from ivr.portal.hooks import hooks as portal_hooks
        from ivr.portal.services import check_portal

        hooks = portal_hooks
        found = check_portal(portal)
        problems += found
        if not any(p.severity == "error" for p in found):
            click.echo(f"{portal}: ok")
    for path in dialplans:
        try:
            plan = load_dialplan(path, hooks=hooks)
        except DialplanError as exc:
            problems += exc.problems
            continue
        problems += [*plan.warnings, *audio_warnings(plan)]
        click.echo(f"{path}: ok ({len(plan.states)} states, {len(plan.edges())} transitions)")
    for problem in problems:
        click.echo(str(problem), err=True)
    if any(p.severity == "error" for p in problems):
        sys.exit(EXIT_ERROR)
    if problems and strict:
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("dialplan", required=False, type=click.Path(dir_okay=False))
@click.option("--portal", type=click.Path(dir_okay=False), help="Portal configuration.")
@click.option("--caller", required=True, help="The caller's number (A-number), any format.")
@click.option("--called", default="", help="The number called.")
@click.option("--keys", default="", help='Key tokens: "4711# wait=6 now=*11 hangup".')
@click.option(
    "--at",
    "at",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z"]),
    help="When the call starts, e.g. 2026-01-05T19:30:00+01:00 (default: a Monday 09:00).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def simulate(
    dialplan: str | None,
    portal: str | None,
    caller: str,
    called: str,
    keys: str,
    at: datetime | None,
    as_json: bool,
) -> None:
    """Run one scripted call of DIALPLAN on a virtual clock and print the transcript.

    With --portal and no DIALPLAN: the portal dialplan that comes with the package.
    """
    dialplan = _dialplan_or_packaged(dialplan, portal)
    steps = parse_script(keys)
    try:
        engine = default_engine(Path(dialplan), Path(portal) if portal else None)
    except ContextError as exc:
        raise _missing_context(exc, dialplan) from None
    start = at.timestamp() if at is not None else REFERENCE_START
    call = Simulator(engine, durations=durations_for(engine)).run(
        steps, caller=caller, called=called, start=start
    )
    if as_json:
        for line in call.lines:
            click.echo(json.dumps(line, ensure_ascii=False, default=str))
    else:
        click.echo(format_transcript(call.lines))


@main.command("test")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--coverage", is_flag=True, help="Report state and transition coverage.")
def test_command(paths: tuple[str, ...], coverage: bool) -> None:
    """Run scenario files (or directories of them) and print a summary.

    Exit 1 when a scenario failed; exit 2 when a file could not be used at all (each
    reason one file:line:col line on stderr; the other files still run).
    """
    files: list[Path] = []
    for path in map(Path, paths):
        files += sorted(path.rglob("*.yaml")) if path.is_dir() else [path]
    runner = ScenarioRunner()
    passed = failed = broken = 0
    for file in files:
        try:
            loaded = runner.load_file(file)
        except DialplanError as exc:
            broken += 1
            for problem in exc.problems:
                click.echo(str(problem), err=True)
            continue
        for result in runner.run_loaded(loaded):
            if result.passed:
                passed += 1
                click.echo(f"PASS {file}:{result.line} {result.name}")
            else:
                failed += 1
                click.echo(f"FAIL {file}:{result.line} {result.name}")
                click.echo("  " + result.report().replace("\n", "\n  "))
    if coverage:
        for report in runner.coverage():
            click.echo(report.report())
    unusable = f", {broken} file{'s' if broken != 1 else ''} not usable" if broken else ""
    click.echo(f"{passed} passed, {failed} failed{unusable}")
    if broken:
        sys.exit(EXIT_ERROR)
    if failed:
        sys.exit(EXIT_FAILED)


@main.command()
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="File to write (default stdout)."
)
def schema(output: str | None) -> None:
    """Write the JSON Schema of the dialplan format (for editor completion)."""
    from ivr.schema import dialplan_schema

    text = json.dumps(dialplan_schema(), indent=2, ensure_ascii=False) + "\n"
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


@main.command()
@click.argument("dialplan", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Output file: .md/.mmd (Mermaid), .dot, .svg or .png (Graphviz).",
)
def graph(dialplan: str, output: str) -> None:
    """Draw DIALPLAN as a state diagram."""
    from ivr.graph import write_graph

    click.echo(f"wrote {write_graph(load_dialplan(dialplan), output)}")


def _dialplan_or_packaged(dialplan: str | None, portal: str | None) -> str:
    """DIALPLAN as given, else with --portal the packaged portal dialplan."""
    if dialplan is not None:
        return dialplan
    if portal is None:
        raise click.UsageError(
            "give a DIALPLAN (or --portal CONFIG for the portal dialplan of the package)"
        )
    from ivr.resources import portal_dialplan

    return str(portal_dialplan())


def _missing_context(error: ContextError, dialplan: str) -> click.UsageError:
    """A usage error for a dialplan whose hooks need services the command was not given."""
    if needs_portal(error):
        return click.UsageError(
            f"{dialplan} needs a portal configuration: give --portal CONFIG ({error})"
        )
    return click.UsageError(f"{dialplan}: {error}, which this command cannot give")


def _hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"{value!r}: use HOST:PORT")
    return host, int(port)


@main.command()
@click.argument("dialplan", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--portal", type=click.Path(exists=True, dir_okay=False), help="Portal config.")
@click.option("--registrar", required=True, help="Registrar/proxy HOST:PORT (e.g. Kamailio).")
@click.option("--user", default="portal", show_default=True, help="User to register as.")
@click.option(
    "--password",
    default="",
    envvar="IVR_SIP_PASSWORD",
    show_envvar=True,
    help="Digest password (better in the environment: a command line is public).",
)
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5080, show_default=True, help="SIP port (0: any free port).")
@click.option("--rtp-ports", default="20000-29999", show_default=True, help="RTP port range.")
@click.option(
    "--pull-target",
    default="sip:*11@{registrar}",
    show_default=True,
    help="With the simulated PBX (no dialog to replace): REFER target of a pull; {call}, "
    "{caller}, {registrar} and session variables are filled in (e.g. sip:pull-{call}@pbx).",
)
@click.option("--transfer-target", default="sip:{target}@{registrar}", show_default=True)
@click.option(
    "--dial-target",
    default="sip:{number}@{registrar}",
    show_default=True,
    help="Where call-backs go (through the proxy); {number} and session variables.",
)
@click.option(
    "--domain",
    default="",
    help="Domain of the portal's own URIs on calls it places (default: the registrar's host).",
)
@click.option(
    "--connect-timeout",
    default=10.0,
    show_default=True,
    help="Seconds the remote party has to answer a pull (INVITE with Replaces).",
)
@click.option(
    "--rtp-timeout",
    default=60.0,
    show_default=True,
    help="End a call after this many seconds without RTP from the caller (0: never).",
)
@click.option("--keepalive", default=30.0, show_default=True, help="Registrar OPTIONS ping (s).")
@click.option(
    "--inband",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="In-band DTMF detection (auto: when no telephone-event was negotiated).",
)
@click.option(
    "--trust",
    multiple=True,
    metavar="CIDR",
    help="Also take SIP from this network (repeatable); the registrar's own address is "
    "always trusted, everything else is dropped unanswered.",
)
@click.option(
    "--identity",
    type=click.Choice(["pai", "pai-only", "from"]),
    default="pai",
    show_default=True,
    help="The caller's number: from P-Asserted-Identity (else From), only from it, or from From.",
)
@click.option(
    "--call-rate",
    default=50.0,
    show_default=True,
    help="New calls/s per source (behind one proxy: the whole PBX's peak).",
)
@click.option("--call-burst", default=100, show_default=True, help="Burst of new calls per source.")
@click.option(
    "--max-calls",
    default=0,
    show_default=True,
    help="Calls at once (0: what the open-file limit and the RTP ports allow).",
)
@click.option(
    "--rtp-latch-any",
    is_flag=True,
    help="Take a call's RTP from wherever its first packet comes (callers behind NAT), "
    "and answer there; by default only from the host its SDP names.",
)
@click.option(
    "--register/--no-register",
    default=True,
    show_default=True,
    help="Register at --registrar; --no-register: a node behind a dispatcher (Kamailio's "
    "dispatcher module), which takes requests from the proxy and answers its OPTIONS probes.",
)
@click.option(
    "--drain",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="SIGTERM: new calls and OPTIONS get 503, running calls have this many seconds to "
    "end before BYE (0: stop at once). A second SIGTERM or SIGINT stops at once.",
)
@click.option(
    "--workers",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Run N serving processes on ports PORT..PORT+N-1 and supervise them "
    "(0: serve in this process).",
)
@click.option(
    "--dispatcher-list",
    type=click.Path(dir_okay=False),
    help="Write Kamailio's dispatcher list of the serving ports here (`SETID sip:HOST:PORT`).",
)
@click.option(
    "--dispatcher-set",
    default=1,
    show_default=True,
    type=click.IntRange(min=0),
    help="The dispatcher set id in --dispatcher-list.",
)
@click.option("--stats", type=click.Path(dir_okay=False), help="Write counters here at exit.")
@click.pass_context
def serve(
    ctx: click.Context,
    dialplan: str | None,
    portal: str | None,
    registrar: str,
    user: str,
    password: str,
    bind: str,
    port: int,
    rtp_ports: str,
    pull_target: str,
    transfer_target: str,
    dial_target: str,
    domain: str,
    connect_timeout: float,
    rtp_timeout: float,
    keepalive: float,
    inband: str,
    trust: tuple[str, ...],
    identity: str,
    call_rate: float,
    call_burst: int,
    max_calls: int,
    rtp_latch_any: bool,
    register: bool,
    drain: float,
    workers: int,
    dispatcher_list: str | None,
    dispatcher_set: int,
    stats: str | None,
) -> None:
    """Answer real calls to DIALPLAN over SIP (register at --registrar); with --portal
    and no DIALPLAN, the portal dialplan that comes with the package.

    Ctrl-C (SIGINT) stops; SIGTERM drains (see --drain); SIGHUP reloads the dialplan,
    the portal configuration and its files for new calls (one error line and the old
    ones stay if they do not load).
    """
    dialplan = _dialplan_or_packaged(dialplan, portal)
    try:
        from ivr.sip.serve import serve as run_server
        from ivr.sip.server import ServeConfig
        from ivr.sip.trust import Trust
    except ImportError as exc:  # the sip extra brings the audio one
        if extra_of(exc) not in ("sip", "audio"):
            raise
        raise MissingExtra("sip", "`ivr serve`", exc.name or "") from None

    first, _, last = rtp_ports.partition("-")
    if not (first.isdigit() and last.isdigit()):
        raise click.BadParameter(f"{rtp_ports!r}: use FIRST-LAST", param_hint="--rtp-ports")
    try:
        Trust.of([], trust)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--trust") from None
    if logging.getLogger().level > logging.WARNING:
        logging.getLogger("ivr").setLevel(logging.WARNING)
    config = ServeConfig(
        registrar=_hostport(registrar),
        user=user,
        password=password,
        bind=bind,
        port=port,
        rtp_ports=(int(first), int(last)),
        pull_target=pull_target,
        transfer_target=transfer_target,
        dial_target=dial_target,
        domain=domain,
        connect_timeout=connect_timeout,
        rtp_timeout=rtp_timeout,
        keepalive=keepalive,
        inband={"auto": None, "on": True, "off": False}[inband],
        trust=trust,
        identity=identity,
        call_rate=call_rate,
        call_burst=call_burst,
        max_calls=max_calls,
        rtp_latch_any=rtp_latch_any,
        register=register,
    )
    ports = [port + i for i in range(max(1, workers))]
    if (workers or dispatcher_list) and not 0 < port <= 65536 - len(ports):
        raise click.BadParameter(
            "give the first of the serving ports (not 0): workers serve PORT..PORT+N-1",
            param_hint="--port",
        )
    _worker_log_format()
    try:
        if dispatcher_list:
            from ivr.sip.workers import write_dispatcher_list

            write_dispatcher_list(Path(dispatcher_list), bind, ports, dispatcher_set)
        if workers:
            ctx.exit(_run_workers(ctx, dialplan, portal, ports, drain, config.password))
        run_server(
            Path(dialplan),
            Path(portal) if portal else None,
            config,
            stats=Path(stats) if stats else None,
            drain=drain,
        )
    except ContextError as exc:
        raise _missing_context(exc, dialplan) from None
    except OSError as exc:
        raise IvrError(f"{exc.filename or 'serve'}: {exc.strerror or exc}") from None


#: set by `ivr serve --workers` in each worker's environment: its port, for its log lines
WORKER_ENV = "IVR_WORKER"


def _worker_log_format() -> None:
    """A worker's log lines name it (``[5081]``): the workers share the launcher's stderr."""
    worker = os.environ.get(WORKER_ENV, "")
    if worker.isdigit():
        for handler in logging.getLogger().handlers:
            handler.setFormatter(
                logging.Formatter(f"%(levelname)s [{worker}] %(name)s: %(message)s")
            )


def _run_workers(
    ctx: click.Context,
    dialplan: str,
    portal: str | None,
    ports: list[int],
    drain: float,
    password: str,
) -> int:
    """Check the configuration once (rendering missing prompt audio), then run a worker
    per port: this command again, without --workers and with its own --port."""
    from ivr.sip.serve import prompt_audio, serving_engine
    from ivr.sip.workers import Supervisor

    prompt_audio(serving_engine(Path(dialplan), Path(portal) if portal else None))
    env = {**os.environ, "IVR_SIP_PASSWORD": password} if password else dict(os.environ)

    def command(port: int) -> list[str]:
        python = [sys.executable, "-c", "from ivr.cli import main; main(prog_name='ivr')"]
        return [*python, *_serve_arguments(ctx, port)]

    def worker_env(port: int) -> dict[str, str]:
        return {**env, WORKER_ENV: str(port)}

    return Supervisor(command, ports, env=worker_env, drain=drain).run()


#: serve options a worker does not inherit: it gets its own --port (and --stats), the
#: password comes by environment (not on a command line anyone can read)
_NOT_INHERITED = frozenset(("workers", "dispatcher_list", "dispatcher_set", "port", "password"))


def _serve_arguments(ctx: click.Context, port: int) -> list[str]:
    """`ivr serve`'s arguments as given to this command, for the worker on ``port``."""
    parent = ctx.parent.params if ctx.parent is not None else {}
    args = ["--log-level", str(parent.get("log_level", "error")), "serve"]
    positional: list[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if isinstance(param, click.Argument):
            if value is not None:  # no DIALPLAN: the worker finds the packaged one too
                positional.append(str(value))
            continue
        if not isinstance(param, click.Option) or param.name in _NOT_INHERITED or value is None:
            continue
        option = param.opts[-1]
        if param.is_flag and param.secondary_opts:
            args.append(param.opts[0] if value else param.secondary_opts[0])
        elif param.is_flag:
            args += [option] if value else []
        elif param.multiple:
            for item in value:
                args += [option, str(item)]
        elif param.name == "stats":  # stats.json -> stats.5081.json
            path = Path(value)
            args += [option, str(path.with_suffix(f".{port}{path.suffix}"))]
        else:
            args += [option, str(value)]
    return [*args, "--port", str(port), "--", *positional]


@main.group()
def portal() -> None:
    """Anywhere Portal administration: PINs and lockouts.

    Name the portal as for `ivr serve`: --portal CONFIG (its directory, PIN rules and
    lockout store). The older form names the DIRECTORY file instead; it does not say
    which lockout store the portal uses, so `unlock` and `locks` then need --store.
    """


_PORTAL_OPTION = click.option(
    "--portal",
    "portal_config",
    type=click.Path(exists=True, dir_okay=False),
    help="The portal configuration, as for `ivr serve --portal`: its directory, PIN rules "
    "and lockout store.",
)
_STORE_OPTION = click.option(
    "--store",
    help="The lockout store: an SQLite file or a postgresql:// URL (default: the one the "
    "portal configuration, or the IVR_LOCKOUT_STORE environment variable, names).",
)


@dataclass(frozen=True, slots=True)
class _PortalTarget:
    """What a `ivr portal` command acts on."""

    directory: YamlDirectory | None
    store: str | Path | None  # an SQLite file, or a PostgreSQL URL
    loaded: LoadedPortal | None
    employee: str


def _portal_target(
    args: tuple[str, ...],
    portal_config: str | None,
    store: str | None = None,
    *,
    employee: bool = True,
    lockouts: bool = False,
) -> _PortalTarget:
    """Resolve ``[DIRECTORY] [EMPLOYEE]`` and --portal/--store: the directory (the
    employee must be in it), and with ``lockouts`` the store `ivr serve` uses."""
    from ivr.portal.config import is_postgres_url, load_portal
    from ivr.portal.directory import YamlDirectory
    from ivr.portal.services import lockout_store_spec

    wanted = 1 if employee else 0
    directory_file = None
    if len(args) == wanted + 1 and portal_config is None:
        directory_file, args = args[0], args[1:]
    if len(args) != wanted:
        if portal_config is not None and len(args) == wanted + 1:
            raise click.UsageError("--portal CONFIG names the directory: give no DIRECTORY")
        shape = "[DIRECTORY] EMPLOYEE" if employee else "at most a DIRECTORY"
        raise click.UsageError(f"give {shape}, not {len(args)} arguments")
    loaded = load_portal(portal_config) if portal_config is not None else None
    directory = None
    if loaded is not None:
        directory = _load_directory(loaded)
    elif directory_file is not None:
        directory = YamlDirectory.load(directory_file)
    name = args[0] if employee else ""
    if employee and directory is not None:
        _employee_of(directory, name)
    path: str | Path | None = None
    if lockouts:
        if store is not None:
            path = store if is_postgres_url(store) else Path(store)
        elif loaded is not None:
            path = lockout_store_spec(loaded)
        else:
            why = "a directory does not say which lockout store the portal uses: "
            raise click.UsageError(
                (why if directory else "") + "give --portal CONFIG (the store "
                "`ivr serve --portal CONFIG` uses) or --store FILE"
            )
    elif directory is None:
        raise click.UsageError("give --portal CONFIG (or the DIRECTORY file)")
    return _PortalTarget(directory, path, loaded, name)


def _load_directory(loaded: LoadedPortal) -> YamlDirectory:
    """The directory a loaded portal configuration names, read in its region."""
    from ivr.portal.directory import YamlDirectory

    return YamlDirectory.load(loaded.relative(loaded.config.directory), loaded.config.region)


def _employee_of(book: YamlDirectory, employee: str) -> Employee:
    person = book.get(employee)
    if person is None:
        known = ", ".join(book.employees)
        raise IvrError(f"{book.path}: no employee {employee!r} (known: {known})")
    return person


def _when(seconds: float) -> str:
    """A lockout's end as UTC ISO time (a permanent one: until an administrator unlocks)."""
    import math
    from datetime import UTC, datetime

    if math.isinf(seconds):
        return "an administrator unlocks"
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def _open_store(spec: str | Path) -> tuple[LockoutStore | None, str]:
    """The lockout store ``spec`` names and how to show it (never a password); None
    for an SQLite file that does not exist yet (nobody has failed a PIN)."""
    from ivr.portal.lockout import SqliteLockoutStore
    from ivr.portal.services import describe_store

    if isinstance(spec, Path):
        return (SqliteLockoutStore(spec) if spec.is_file() else None), str(spec)
    from ivr.portal.lockout_pg import PostgresLockoutStore

    return PostgresLockoutStore(spec), describe_store(spec)


@portal.group()
def db() -> None:
    """The portal's PostgreSQL database (lockouts shared by several nodes)."""


@db.command("init")
@_PORTAL_OPTION
@_STORE_OPTION
def db_init(portal_config: str | None, store: str | None) -> None:
    """Create the lockout tables in the PostgreSQL database the portal uses (--portal
    CONFIG, IVR_LOCKOUT_STORE, or --store URL), or migrate them to this version.
    Idempotent; safe while nodes are running."""
    from ivr.portal.config import is_postgres_url, load_portal
    from ivr.portal.lockout_pg import init_schema
    from ivr.portal.services import LOCKOUT_STORE_ENV, describe_store, lockout_store_spec

    if store is None and portal_config is not None:
        spec = lockout_store_spec(load_portal(portal_config))
        if isinstance(spec, Path):
            raise IvrError(
                f"{portal_config}: the lockout store is the SQLite file {spec}, which "
                "needs no set-up; `db init` is for a postgresql:// lockout_store"
            )
        store = spec
    store = store or os.environ.get(LOCKOUT_STORE_ENV)
    if store is None:
        raise click.UsageError("give --portal CONFIG or --store postgresql://…")
    if not is_postgres_url(store):
        raise click.BadParameter("a postgresql:// URL", param_hint="--store")
    click.echo(f"{describe_store(store)}: {init_schema(store)}")


@portal.command("set-pin")
@click.argument("args", nargs=-1, required=True, metavar="[DIRECTORY] EMPLOYEE")
@_PORTAL_OPTION
def set_pin(args: tuple[str, ...], portal_config: str | None) -> None:
    """Set EMPLOYEE's voicemail PIN in the portal's directory (--portal CONFIG, whose
    PIN rules apply) or in DIRECTORY; only its argon2id hash is written.

    The PIN is read without echo from the terminal (twice), or as one line from
    standard input when that is not a terminal.
    """
    from ivr.portal.pin import PinRuleError, check_pin_rules, hash_pin

    target = _portal_target(args, portal_config)
    assert target.directory is not None
    person = _employee_of(target.directory, target.employee)
    rules: dict[str, Any] = {}
    if target.loaded is not None:
        rules["max_repeat"] = target.loaded.config.pin_policy.max_repeated_digits
    if sys.stdin.isatty():
        pin = click.prompt("New PIN", hide_input=True, confirmation_prompt=True)
    else:
        pin = sys.stdin.readline().strip()
    try:
        check_pin_rules(pin, person.numbers, **rules)
    except PinRuleError as exc:
        raise IvrError(f"PIN refused: {exc}") from None
    target.directory.write_pin_hash(target.employee, hash_pin(pin))
    click.echo(f"PIN of {target.employee!r} set (argon2id hash written to {target.directory.path})")


@portal.command()
@click.argument("args", nargs=-1, required=True, metavar="[DIRECTORY] EMPLOYEE")
@_PORTAL_OPTION
@_STORE_OPTION
def unlock(args: tuple[str, ...], portal_config: str | None, store: str | None) -> None:
    """Lift EMPLOYEE's PIN lockout and forget their failed attempts, in the lockout
    store `ivr serve --portal CONFIG` uses (or --store FILE).

    Exit 1, changing nothing, when that store holds no lock of EMPLOYEE.
    """
    import time

    target = _portal_target(args, portal_config, store, lockouts=True)
    employee = target.employee
    assert target.store is not None
    lockouts, path = _open_store(target.store)
    if lockouts is None:
        click.echo(f"{employee!r} is not locked out: no lockout file {path}", err=True)
        sys.exit(EXIT_FAILED)
    state = next((s for s in lockouts.states() if s.employee == employee), None)
    if state is None or state.locked_until <= time.time():
        held = (
            f" ({state.failures} failed PIN(s) in a row, {state.lockouts} earlier lockout(s): kept)"
            if state
            else ""
        )
        click.echo(f"{employee!r} is not locked out in {path}{held}; nothing changed", err=True)
        sys.exit(EXIT_FAILED)
    lockouts.reset(employee)
    click.echo(f"{employee!r} unlocked (was locked until {_when(state.locked_until)}; {path})")


@portal.command()
@click.argument("args", nargs=-1, metavar="[DIRECTORY]")
@_PORTAL_OPTION
@_STORE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def locks(
    args: tuple[str, ...], portal_config: str | None, store: str | None, as_json: bool
) -> None:
    """List employees who are locked out or have failed PIN attempts: how many in a
    row, until when the lock lasts, and where the recent failures came from; in the
    lockout store `ivr serve --portal CONFIG` uses (or --store FILE)."""
    import json
    import math
    import time

    spec = _portal_target(args, portal_config, store, employee=False, lockouts=True).store
    assert spec is not None
    lockouts, path = _open_store(spec)
    if lockouts is None:
        click.echo("[]" if as_json else f"no lockout file {path}: nobody has failed a PIN yet")
        return
    now = time.time()
    states = lockouts.states()
    if as_json:
        rows = [
            {
                "employee": s.employee,
                "failures": s.failures,
                "locked": s.locked_until > now,
                "permanent": math.isinf(s.locked_until),
                "lockouts": s.lockouts,
                "locked_until": (
                    _when(s.locked_until)
                    if s.locked_until and not math.isinf(s.locked_until)
                    else None
                ),
                "recent": [{"at": _when(f.at), "source": f.source} for f in s.recent],
            }
            for s in states
        ]
        click.echo(json.dumps(rows, indent=1))
        return
    if not states:
        click.echo(f"nobody is locked out or has failed attempts ({path})")
        return
    for state in states:
        status = f"LOCKED until {_when(state.locked_until)}" if state.locked_until > now else "-"
        if state.lockouts:
            status += f" ({state.lockouts} lockout(s) since the last correct PIN or unlock)"
        click.echo(f"{state.employee}: {state.failures} failure(s) in a row, {status}")
        for failure in state.recent[-5:]:
            click.echo(f"    {_when(failure.at)}  {failure.source}")


class _PromptsOptions:
    """The ``prompts`` group's options; the catalog is loaded only when a command runs
    (never for --help, which must not depend on the working directory)."""

    def __init__(self, lang: str, catalog: str | None, cache: str | None) -> None:
        self.lang = lang
        self.catalog = catalog
        self.cache = cache

    def audio(self) -> PromptAudio:
        from ivr.audio.library import PromptAudio
        from ivr.prompts.catalog import load_catalog

        folder = self.catalog or Path("prompts") / self.lang
        return PromptAudio(load_catalog(folder, self.lang), self.cache)


@main.group()
@click.option("--lang", default="de", show_default=True, help="Catalog language (prompts/LANG).")
@click.option("--catalog", type=click.Path(file_okay=False), help="Catalog directory.")
@click.option("--cache", type=click.Path(file_okay=False), help="Cache directory.")
@click.pass_context
def prompts(ctx: click.Context, lang: str, catalog: str | None, cache: str | None) -> None:
    """Prompt audio: render the catalog offline, list it, say one prompt."""
    ctx.obj = _PromptsOptions(lang, catalog, cache)


@prompts.command()
@click.option("--force", is_flag=True, help="Render everything again, ignoring the cache.")
@click.pass_obj
def render(options: _PromptsOptions, force: bool) -> None:
    """Render every prompt piece and parameter fragment that is not cached."""
    audio = options.audio()
    pieces = list(audio.pieces())
    with click.progressbar(length=len(pieces), label="rendering", file=sys.stderr) as bar:
        summary = audio.render(force=force, progress=lambda piece: bar.update(1))
    for failure in summary.failed:
        click.echo(f"error: {failure}", err=True)
    skipped = f", {summary.skipped} not tried" if summary.skipped else ""
    click.echo(
        f"{summary.rendered} rendered, {summary.cached} cached, {summary.recorded} recorded, "
        f"{len(summary.failed)} failed{skipped} ({audio.cache_dir})"
    )
    if summary.failed:
        sys.exit(EXIT_ERROR)


@prompts.command("list")
@click.pass_obj
def list_prompts(options: _PromptsOptions) -> None:
    """Each prompt: id, source (tts/recorded), duration, text."""
    audio = options.audio()
    for prompt_id in sorted(audio.catalog):
        prompt = audio.catalog[prompt_id]
        source = "recorded" if audio.recording(prompt_id) and not prompt.params else "tts"
        example = {name: _EXAMPLE_VALUES[kind] for name, kind in prompt.params.items()}
        seconds = audio.seconds(prompt_id, example)
        shown = f"{seconds:6.2f}s" if seconds is not None else "   -   "
        click.echo(f"{prompt_id:<28} {source:<8} {shown}  {prompt.text}")


_EXAMPLE_VALUES = {"number": 2, "digits": "0301234567", "keys": "*11", "time": "14:30", "text": ""}


@prompts.command()
@click.argument("prompt_id")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@click.option("-p", "--param", "params", multiple=True, help="NAME=VALUE (repeatable).")
@click.option(
    "--format",
    "codec",
    type=click.Choice(["pcm", "pcmu", "pcma"]),
    default="pcm",
    show_default=True,
    help="16-bit PCM, or G.711 µ-law / A-law.",
)
@click.pass_obj
def say(
    options: _PromptsOptions, prompt_id: str, output: str, params: tuple[str, ...], codec: Codec
) -> None:
    """Write PROMPT_ID, its parameters filled in, as an 8 kHz WAV file."""
    audio = options.audio()
    if prompt_id not in audio.catalog:
        raise IvrError(f"no prompt {prompt_id!r} in {audio.catalog.directory}")
    values: dict[str, str] = {}
    for item in params:
        name, sep, value = item.partition("=")
        if not sep:
            raise IvrError(f"--param {item!r}: use NAME=VALUE")
        values[name] = value
    missing = set(audio.catalog[prompt_id].params) - set(values)
    if missing:
        raise IvrError(f"prompt {prompt_id!r} needs --param {', '.join(sorted(missing))}=...")
    Path(output).write_bytes(audio.wav(prompt_id, values, codec))
    click.echo(f"wrote {output}")
