"""The ``ivr`` command: check, simulate, test, schema, graph, serve, portal, prompts.

Exit codes: 0 success; 1 test failures (or warnings with ``--strict``); 2 errors in
the files given (dialplan, scenario, script) or bad usage.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from ivr.dialplan.loader import load_dialplan
from ivr.errors import DialplanError, IvrError, Problem
from ivr.sim import REFERENCE_START, Simulator, format_transcript, parse_script
from ivr.testing import ScenarioRunner, audio_warnings, default_engine, durations_for

EXIT_FAILED = 1
EXIT_ERROR = 2


class _Group(click.Group):
    """Turns every IvrError into a one-line message and exit code 2."""

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


@click.group(cls=_Group)
@click.version_option(package_name="ivr")
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
@click.argument("dialplans", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--portal",
    type=click.Path(dir_okay=False),
    help="Also validate this portal configuration (and the directory it names) with them.",
)
@click.option("--strict", is_flag=True, help="Fail (exit 1) on warnings too.")
def check(dialplans: tuple[str, ...], portal: str | None, strict: bool) -> None:
    """Validate DIALPLANS (and a portal configuration): errors exit 2, warnings print."""
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
@click.argument("dialplan", type=click.Path(dir_okay=False))
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
    dialplan: str,
    portal: str | None,
    caller: str,
    called: str,
    keys: str,
    at: datetime | None,
    as_json: bool,
) -> None:
    """Run one scripted call of DIALPLAN on a virtual clock and print the transcript."""
    steps = parse_script(keys)
    engine = default_engine(Path(dialplan), Path(portal) if portal else None)
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
    """Run scenario files (or directories of them) and print a summary."""
    files: list[Path] = []
    for path in map(Path, paths):
        files += sorted(path.rglob("*.yaml")) if path.is_dir() else [path]
    runner = ScenarioRunner()
    passed = failed = 0
    for file in files:
        for result in runner.run_file(file):
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
    click.echo(f"{passed} passed, {failed} failed")
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


def _hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"{value!r}: use HOST:PORT")
    return host, int(port)


@main.command()
@click.argument("dialplan", type=click.Path(exists=True, dir_okay=False))
@click.option("--portal", type=click.Path(exists=True, dir_okay=False), help="Portal config.")
@click.option("--registrar", required=True, help="Registrar/proxy HOST:PORT (e.g. Kamailio).")
@click.option("--user", default="portal", show_default=True, help="User to register as.")
@click.option("--password", default="", help="Digest password (or env IVR_SIP_PASSWORD).")
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
@click.option("--stats", type=click.Path(dir_okay=False), help="Write counters here at exit.")
def serve(
    dialplan: str,
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
    stats: str | None,
) -> None:
    """Answer real calls to DIALPLAN over SIP (register at --registrar); Ctrl-C stops."""
    import os

    from ivr.sip.serve import serve as run_server
    from ivr.sip.server import ServeConfig
    from ivr.sip.trust import Trust

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
        password=password or os.environ.get("IVR_SIP_PASSWORD", ""),
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
    )
    run_server(
        Path(dialplan),
        Path(portal) if portal else None,
        config,
        stats=Path(stats) if stats else None,
    )


@main.group()
def portal() -> None:
    """Anywhere Portal administration: PINs and lockouts."""


@portal.command("set-pin")
@click.argument("directory", type=click.Path(exists=True, dir_okay=False))
@click.argument("employee")
def set_pin(directory: str, employee: str) -> None:
    """Set EMPLOYEE's voicemail PIN in DIRECTORY (only its argon2id hash is written).

    The PIN is read without echo from the terminal (twice), or as one line from
    standard input when that is not a terminal.
    """
    from ivr.portal.directory import YamlDirectory
    from ivr.portal.pin import PinRuleError, check_pin_rules, hash_pin

    book = YamlDirectory.load(directory)
    person = book.get(employee)
    if person is None:
        raise IvrError(
            f"{directory}: no employee {employee!r} (known: {', '.join(book.employees)})"
        )
    if sys.stdin.isatty():
        pin = click.prompt("New PIN", hide_input=True, confirmation_prompt=True)
    else:
        pin = sys.stdin.readline().strip()
    try:
        check_pin_rules(pin, person.numbers)
    except PinRuleError as exc:
        raise IvrError(f"PIN refused: {exc}") from None
    book.write_pin_hash(employee, hash_pin(pin))
    click.echo(f"PIN of {employee!r} set (argon2id hash written to {directory})")


@portal.command()
@click.argument("directory", type=click.Path(exists=True, dir_okay=False))
@click.argument("employee")
@click.option(
    "--store",
    type=click.Path(dir_okay=False),
    help="The SQLite lockout file (default: .ivr-lockouts.sqlite beside DIRECTORY).",
)
def unlock(directory: str, employee: str, store: str | None) -> None:
    """Lift EMPLOYEE's PIN lockout and forget their failed attempts."""
    from ivr.portal.directory import YamlDirectory
    from ivr.portal.lockout import SqliteLockoutStore
    from ivr.portal.services import DEFAULT_STORE_NAME

    book = YamlDirectory.load(directory)
    if book.get(employee) is None:
        raise IvrError(
            f"{directory}: no employee {employee!r} (known: {', '.join(book.employees)})"
        )
    path = Path(store) if store else Path(directory).with_name(DEFAULT_STORE_NAME)
    SqliteLockoutStore(path).reset(employee)
    click.echo(f"{employee!r} unlocked ({path})")


@portal.command()
@click.argument("directory", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--store",
    type=click.Path(dir_okay=False),
    help="The SQLite lockout file (default: .ivr-lockouts.sqlite beside DIRECTORY).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def locks(directory: str, store: str | None, as_json: bool) -> None:
    """List employees who are locked out or have failed PIN attempts: how many in a
    row, until when the lock lasts, and where the recent failures came from."""
    import json
    import time
    from datetime import UTC, datetime

    from ivr.portal.lockout import SqliteLockoutStore
    from ivr.portal.services import DEFAULT_STORE_NAME

    path = Path(store) if store else Path(directory).with_name(DEFAULT_STORE_NAME)
    if not path.exists():
        click.echo(f"no lockout file {path}: nobody has failed a PIN yet")
        return
    now = time.time()

    def when(seconds: float) -> str:
        return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")

    states = SqliteLockoutStore(path).states()
    if as_json:
        rows = [
            {
                "employee": s.employee,
                "failures": s.failures,
                "locked": s.locked_until > now,
                "locked_until": when(s.locked_until) if s.locked_until else None,
                "recent": [{"at": when(f.at), "source": f.source} for f in s.recent],
            }
            for s in states
        ]
        click.echo(json.dumps(rows, indent=1))
        return
    if not states:
        click.echo("nobody is locked out or has failed attempts")
        return
    for state in states:
        status = f"LOCKED until {when(state.locked_until)}" if state.locked_until > now else "-"
        click.echo(f"{state.employee}: {state.failures} failure(s) in a row, {status}")
        for failure in state.recent[-5:]:
            click.echo(f"    {when(failure.at)}  {failure.source}")


@main.group()
@click.option("--lang", default="de", show_default=True, help="Catalog language (prompts/LANG).")
@click.option("--catalog", type=click.Path(file_okay=False), help="Catalog directory.")
@click.option("--cache", type=click.Path(file_okay=False), help="Cache directory.")
@click.pass_context
def prompts(ctx: click.Context, lang: str, catalog: str | None, cache: str | None) -> None:
    """Prompt audio: render the catalog offline, list it, say one prompt."""
    from ivr.audio.library import PromptAudio
    from ivr.prompts.catalog import load_catalog

    ctx.obj = PromptAudio(load_catalog(catalog or Path("prompts") / lang, lang), cache)


@prompts.command()
@click.option("--force", is_flag=True, help="Render everything again, ignoring the cache.")
@click.pass_obj
def render(audio: Any, force: bool) -> None:
    """Render every prompt piece and parameter fragment that is not cached."""
    pieces = list(audio.pieces())
    with click.progressbar(length=len(pieces), label="rendering", file=sys.stderr) as bar:
        summary = audio.render(force=force, progress=lambda piece: bar.update(1))
    for failure in summary.failed:
        click.echo(f"error: {failure}", err=True)
    click.echo(
        f"{summary.rendered} rendered, {summary.cached} cached, {summary.recorded} recorded, "
        f"{len(summary.failed)} failed ({audio.cache_dir})"
    )
    if summary.failed:
        sys.exit(EXIT_ERROR)


@prompts.command("list")
@click.pass_obj
def list_prompts(audio: Any) -> None:
    """Each prompt: id, source (tts/recorded), duration, text."""
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
def say(audio: Any, prompt_id: str, output: str, params: tuple[str, ...], codec: str) -> None:
    """Write PROMPT_ID, its parameters filled in, as an 8 kHz WAV file."""
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
