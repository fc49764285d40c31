"""The ``ivr`` command: check, simulate, test, schema, graph.

Exit codes: 0 success; 1 test failures (or warnings with ``--strict``); 2 errors in
the files given (dialplan, scenario, script) or bad usage.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ivr.dialplan.loader import load_dialplan
from ivr.errors import DialplanError, IvrError
from ivr.sim import Simulator, format_transcript, parse_script
from ivr.testing import ScenarioRunner, default_engine

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
def main() -> None:
    """ivr — declarative voice menus: check, simulate and test dialplans."""


@main.command()
@click.argument("dialplans", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Fail (exit 1) on warnings too.")
def check(dialplans: tuple[str, ...], strict: bool) -> None:
    """Validate DIALPLANS: errors exit 2, warnings are printed."""
    errors = warnings = 0
    for path in dialplans:
        try:
            plan = load_dialplan(path)
        except DialplanError as exc:
            errors += len(exc.problems)
            for problem in exc.problems:
                click.echo(str(problem), err=True)
            continue
        for warning in plan.warnings:
            warnings += 1
            click.echo(str(warning), err=True)
        click.echo(f"{path}: ok ({len(plan.states)} states, {len(plan.edges())} transitions)")
    if errors:
        sys.exit(EXIT_ERROR)
    if warnings and strict:
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("dialplan", type=click.Path(dir_okay=False))
@click.option("--caller", required=True, help="The caller's number (A-number), any format.")
@click.option("--called", default="", help="The number called.")
@click.option("--keys", default="", help='Key tokens: "4711# wait=6 now=*11 hangup".')
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def simulate(dialplan: str, caller: str, called: str, keys: str, as_json: bool) -> None:
    """Run one scripted call of DIALPLAN on a virtual clock and print the transcript."""
    steps = parse_script(keys)
    engine = default_engine(Path(dialplan))
    call = Simulator(engine).run(steps, caller=caller, called=called)
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
