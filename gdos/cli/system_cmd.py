"""``gdos system create | add | show | list | rm``: systems and their modules."""

from __future__ import annotations

import sys
from typing import Any

import typer

from gdos.cli.common import JSON_OPTION, fail, parse_env, print_json, request
from gdos.cli.package_cmd import split_ref
from gdos.errors import ErrorCode, GdosError
from gdos.names import natural_key

app = typer.Typer(help="Define systems: modules, packages and start order.", no_args_is_help=True)


@app.command()
def create(name: str = typer.Argument(..., help="System name."), json: bool = JSON_OPTION) -> None:
    """Create an empty system."""
    reply = request("system.create", name=name)
    if json:
        print_json(reply)
        return
    sys.stdout.write(f"system {name} created\n")


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
    if json:
        print_json(reply)
        return
    m = reply["module"]
    pin = f"@{m['version']}" if m["version"] else " (latest)"
    deps = f", after {', '.join(m['after'])}" if m["after"] else ""
    result = reply.get("result", "added")
    lines = [f"{result} {system}/{module}: package {m['package']}{pin}{deps}"]
    lines += [f"  {change}" for change in reply.get("changes", [])]
    sys.stdout.write("\n".join(lines) + "\n")


@app.command()
def show(name: str = typer.Argument(..., help="System name."), json: bool = JSON_OPTION) -> None:
    """A system's modules, start levels and instances."""
    reply = request("system.show", name=name)
    if json:
        print_json(reply)
        return
    out = [f"system {name}"]
    for number, level in enumerate(reply["levels"], 1):
        out.append(f"  level {number}: {', '.join(level)}")
    for m in reply["modules"]:
        pin = m["version"] or "latest"
        deps = f"  after {', '.join(m['after'])}" if m["after"] else ""
        out.append(f"  module {m['name']}: {m['package']}@{pin}{deps}")
        out += [f"    {line}" for line in override_lines(m.get("overrides") or {})]
    sys.stdout.write("\n".join(out) + "\n")
    if reply["instances"]:
        from gdos.cli.service_cmd import print_status

        print_status(reply["instances"])


@app.command("list")
def list_systems(json: bool = JSON_OPTION) -> None:
    """Every system with its module and instance counts."""
    systems = request("system.list")["systems"]
    if json:
        print_json(systems)
        return
    from gdos.cli.tables import Column, print_table

    columns = [Column(name) for name in ("SYSTEM", "MODULES", "INSTANCES", "RUNNING")]
    rows = [
        [s["system"], str(s["modules"]), str(s["instances"]), str(s["running"])]
        for s in sorted(systems, key=lambda s: natural_key(s["system"]))
    ]
    print_table(columns, rows)


@app.command()
def rm(
    target: str = typer.Argument(..., help="SYSTEM or SYSTEM/MODULE."),
    json: bool = JSON_OPTION,
) -> None:
    """Remove a system or one module (refused while instances are deployed)."""
    system, _, module = target.partition("/")
    reply = request("system.rm", name=system, module=module or None)
    if json:
        print_json(reply)
        return
    sys.stdout.write(f"removed {reply['removed']}\n")


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
