"""``gdos system create | add | show | list | rm``: systems and their modules."""

from __future__ import annotations

from typing import Any

import typer

from gdos.cli.common import JSON_OPTION, parse_env, request
from gdos.cli.output import Output, fail, output
from gdos.cli.package_cmd import split_ref
from gdos.cli.tables import Column
from gdos.errors import ErrorCode, GdosError
from gdos.names import natural_key

app = typer.Typer(help="Define systems: modules, packages and start order.", no_args_is_help=True)
COLUMNS = [Column(name) for name in ("SYSTEM", "MODULES", "INSTANCES", "RUNNING")]


@app.command()
def create(name: str = typer.Argument(..., help="System name."), json: bool = JSON_OPTION) -> None:
    """Create an empty system."""
    output(json).show(
        request("system.create", name=name), lambda out, _: out.line(f"system {name} created")
    )


@app.command()
def add(
    system: str = typer.Argument(..., help="System name."),
    module: str = typer.Argument(..., help="Module name (unique in the system)."),
    package: str = typer.Option(..., "--package", "-p", help="PACKAGE or PACKAGE@VERSION."),
    after: list[str] = typer.Option([], "--after", help="Start after this module (repeatable)."),
    arg: list[str] = typer.Option(None, "--arg", help="Replace the manifest's args (repeatable)."),
    env: list[str] = typer.Option([], "--env", help="KEY=VALUE merged into the env (repeatable)."),
    probe_tcp: int = typer.Option(None, "--probe-tcp", help="Ready when this port accepts."),
    probe_http: str = typer.Option(None, "--probe-http", help="Ready when this URL answers 200."),
    replace: bool = typer.Option(
        False, "--replace", help="Redefine from scratch: drop the env, args, probe and --after."
    ),
    json: bool = JSON_OPTION,
) -> None:
    """Add a module to a system, or change an existing one: what is not given is kept."""
    name, version = split_ref(package)
    probe: dict[str, Any] | None = None
    if probe_tcp is not None and probe_http is not None:
        fail(GdosError(ErrorCode.INVALID_ARGUMENT, "give --probe-tcp or --probe-http, not both."))
    if probe_tcp is not None:
        probe = {"type": "tcp", "port": probe_tcp}
    elif probe_http is not None:
        probe = {"type": "http", "url": probe_http}
    reply = request(
        "system.add",
        system=system,
        module=module,
        package=name,
        version=version,
        after=list(after) or None,
        args=list(arg) if arg else None,
        env=parse_env(env) or None,
        probe=probe,
        replace=replace,
    )

    def render(out: Output, reply: dict[str, Any]) -> None:
        m = reply["module"]
        pin = f"@{m['version']}" if m["version"] else " (latest)"
        deps = f", after {', '.join(m['after'])}" if m["after"] else ""
        result = reply.get("result", "added")
        out.line(f"{result} {system}/{module}: package {m['package']}{pin}{deps}")
        out.lines([f"  {change}" for change in reply.get("changes", [])])

    output(json).show(reply, render)


@app.command()
def show(name: str = typer.Argument(..., help="System name."), json: bool = JSON_OPTION) -> None:
    """A system's modules, start levels and instances."""
    output(json).show(request("system.show", name=name), lambda out, r: _render(out, name, r))


def _render(out: Output, name: str, reply: dict[str, Any]) -> None:
    lines = [f"system {name}"]
    for number, level in enumerate(reply["levels"], 1):
        lines.append(f"  level {number}: {', '.join(level)}")
    for m in reply["modules"]:
        pin = m["version"] or "latest"
        deps = f"  after {', '.join(m['after'])}" if m["after"] else ""
        lines.append(f"  module {m['name']}: {m['package']}@{pin}{deps}")
        lines += [f"    {line}" for line in override_lines(m.get("overrides") or {})]
    out.lines(lines)
    if reply["instances"]:
        from gdos.cli.service_cmd import render_status

        render_status(out, reply["instances"])


@app.command("list")
def list_systems(json: bool = JSON_OPTION) -> None:
    """Every system with its module and instance counts."""
    output(json).show(request("system.list")["systems"], _render_list)


def _render_list(out: Output, systems: list[dict[str, Any]]) -> None:
    rows = [
        [s["system"], str(s["modules"]), str(s["instances"]), str(s["running"])]
        for s in sorted(systems, key=lambda s: natural_key(s["system"]))
    ]
    out.table(COLUMNS, rows)


@app.command()
def rm(
    target: str = typer.Argument(..., help="SYSTEM or SYSTEM/MODULE."),
    json: bool = JSON_OPTION,
) -> None:
    """Remove a system or one module (refused while instances are deployed)."""
    system, _, module = target.partition("/")
    output(json).show(
        request("system.rm", name=system, module=module or None),
        lambda out, r: out.line(f"removed {r['removed']}"),
    )


def override_lines(overrides: dict[str, Any]) -> list[str]:
    """Every override of a module, one line each (args, env, probe)."""
    lines = []
    if overrides.get("args") is not None:
        lines.append(f"args   {' '.join(overrides['args'])}")
    for key, value in sorted((overrides.get("env") or {}).items()):
        lines.append(f"env    {key}={value}")
    if overrides.get("probe"):
        probe = overrides["probe"]
        lines.append(f"probe  {probe.get('type')} {probe.get('url') or probe.get('port') or ''}")
    return lines
