"""Draw a dialplan from the same loaded model the engine runs: Mermaid text always,
SVG/PNG through Graphviz's ``dot`` when it is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ivr.dialplan.model import Dialplan
from ivr.errors import IvrError


class GraphError(IvrError):
    """The diagram could not be written (unknown format, Graphviz missing or failing)."""


def _edge_text(label: str) -> str:
    kind, _, value = label.partition(":")
    return {"option": f"key {value}", "on": f"= {value}"}.get(kind, label.replace("_", " "))


def to_mermaid(plan: Dialplan) -> str:
    """A Mermaid ``stateDiagram-v2`` of ``plan``."""
    lines = ["stateDiagram-v2", f"    [*] --> {plan.initial}"]
    for name, state in plan.states.items():
        kind = type(state).model_fields["kind"].default
        lines.append(f"    {name}: {name} ({kind})")
    for name, edge in plan.edges():
        text = _edge_text(edge.label).replace("#", "#35;").replace(":", "#58;")
        lines.append(f"    {name} --> {edge.target}: {text}")
    for name, state in plan.states.items():
        if state.ends_call:
            lines.append(f"    {name} --> [*]")
    return "\n".join(lines) + "\n"


def to_dot(plan: Dialplan) -> str:
    """A Graphviz DOT digraph of ``plan``."""

    def q(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"digraph {q(plan.name)} {{", "  rankdir=LR;", "  node [shape=box, style=rounded];"]
    lines.append('  "__start" [shape=point];')
    lines.append(f'  "__start" -> {q(plan.initial)};')
    for name, state in plan.states.items():
        kind = type(state).model_fields["kind"].default
        shape = ", peripheries=2" if state.ends_call else ""
        label = q(f"{name} ({kind})")
        lines.append(f"  {q(name)} [label={label}{shape}];")
    for name, edge in plan.edges():
        lines.append(f"  {q(name)} -> {q(edge.target)} [label={q(_edge_text(edge.label))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_graph(plan: Dialplan, output: str | Path) -> Path:
    """Write ``plan`` to ``output``; the suffix picks the format (.md/.mmd/.dot/.svg/.png)."""
    path = Path(output)
    suffix = path.suffix.lower()
    if suffix == ".mmd":
        path.write_text(to_mermaid(plan), encoding="utf-8")
    elif suffix == ".md":
        path.write_text(f"# {plan.name}\n\n```mermaid\n{to_mermaid(plan)}```\n", encoding="utf-8")
    elif suffix == ".dot":
        path.write_text(to_dot(plan), encoding="utf-8")
    elif suffix in (".svg", ".png"):
        dot = shutil.which("dot")
        if dot is None:
            raise GraphError(
                f"{path}: SVG/PNG needs Graphviz's 'dot' (apt-get install graphviz); "
                "use .md or .mmd for Mermaid text"
            )
        result = subprocess.run(
            [dot, f"-T{suffix[1:]}", "-o", str(path)],
            input=to_dot(plan).encode(),
            capture_output=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise GraphError(
                f"{path}: dot failed: {result.stderr.decode(errors='replace').strip()}"
            )
    else:
        raise GraphError(f"{path}: unknown format {suffix!r} (use .md, .mmd, .dot, .svg or .png)")
    return path
