"""``gdos deploy | start | stop | restart | destroy | rollback | status | events | adopt``.

Operations run in the daemon; with ``--wait`` (the default except for
deploy) the command follows its progress and exits 0 only when every
instance reached its goal, 1 otherwise (each failure is printed with its
code and sentence).
"""

from __future__ import annotations

from typing import Any

import typer

from gdos.cli.common import (
    JSON_OPTION,
    complete_node_names,
    complete_service_targets,
    human_duration,
    request,
    run,
    stamp,
)
from gdos.cli.output import Output, fail, output
from gdos.cli.tables import Column
from gdos.errors import ErrorCode, ExitCode, GdosError
from gdos.model import InstanceState
from gdos.names import instance_key
from gdos.safe_text import safe_cell, safe_text
from gdos.units import STATE_STYLE

# states an operation ends in
SETTLED = frozenset(
    {InstanceState.RUNNING, InstanceState.STOPPED, InstanceState.ERROR, InstanceState.FAILED}
)
STATUS_COLUMNS = [
    Column("INSTANCE"),
    Column("STATE"),
    Column("PID", drop=3),
    Column("UPTIME", drop=2),
    Column("RESTARTS", drop=4),
    Column("VERSION", drop=1),
    Column("LAST ERROR", wrap=True),
]


TARGET = typer.Argument(
    ...,
    help="SYSTEM, SYSTEM/MODULE or SYSTEM/MODULE@NODE.",
    autocompletion=complete_service_targets,
)


def register(app: typer.Typer) -> None:
    app.command(help="Deploy a system or one module to nodes.")(deploy)
    for action, text in (
        ("start", "Start instances (a whole system level by level, in dependency order)."),
        ("stop", "Stop instances (a whole system in reverse dependency order)."),
        ("restart", "Restart instances (a whole system level by level)."),
        ("rollback", "Switch instances back to the version they had before the last deploy."),
    ):
        app.command(action, help=text)(_action_command(action))
    app.command(help="Stop and remove instances from their nodes.")(destroy)
    app.command(help="Instances: node, state, pid, uptime, restarts, version, last error.")(status)
    app.command(help="The history of instance state changes.")(events)
    app.command(help="Watch a process started outside gdos like an instance.")(adopt)


def deploy(
    target: str = typer.Argument(..., help="SYSTEM or SYSTEM/MODULE."),
    node: list[str] = typer.Option(
        [], "--node", "-n", help="Node (repeatable).", autocompletion=complete_node_names
    ),
    match: str = typer.Option(None, "--match", help="Nodes whose name matches this glob."),
    wait: bool = typer.Option(False, "--wait/--no-wait", help="Follow until installed."),
    json: bool = JSON_OPTION,
) -> None:
    _operate("deploy", target, wait, json, nodes=list(node), match=match)


def _action_command(action: str) -> Any:
    def command(
        target: str = TARGET,
        wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow until settled."),
        json: bool = JSON_OPTION,
    ) -> None:
        _operate(action, target, wait, json)

    command.__name__ = action
    return command


def destroy(
    target: str = TARGET,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Follow until removed."),
    json: bool = JSON_OPTION,
) -> None:
    if not yes:
        if not output().interactive:
            fail(GdosError(ErrorCode.INVALID_ARGUMENT, "destroy removes instances; add --yes."))
        typer.confirm(f"Stop and remove every instance of {target}?", abort=True)
    _operate("destroy", target, wait, json)


def _operate(action: str, target: str, wait: bool, json: bool, **body: Any) -> None:
    out = output(json)
    outcome = run(lambda client: _follow(client, out, action, target, wait, body))

    def sent(out: Output, outcome: dict[str, Any]) -> None:
        out.line(f"{action} sent: {', '.join(outcome['instances'])}")
        out.line(f"(see 'gdos status {target}')")

    out.show(outcome, _render_outcome if wait else sent)
    if wait and not outcome.get("ok"):
        raise typer.Exit(_exit_code(outcome))


async def _follow(
    client: Any, out: Output, action: str, target: str, wait: bool, body: dict[str, Any]
) -> dict[str, Any]:
    if not wait:
        reply: dict[str, Any] = await client.call(
            "svc.run", action=action, target=target, wait=False, **body
        )
        return reply
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn

    reply, events = await client.stream("svc.run", action=action, target=target, wait=True, **body)
    err = out.console(stderr=True)
    progress = Progress(
        SpinnerColumn(),
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        disable=out.json_mode or not err.is_terminal,
        transient=True,
    )
    outcome: dict[str, Any] = {"ok": False, "results": []}
    ahead: list[dict[str, Any]] = []  # results sent before done (too many for one event)
    settled: dict[str, bool] = {}  # instance -> its last state looks final (for the bar only)
    with progress:
        bar = progress.add_task(f"{action} {target}", total=len(reply["instances"]))
        async for event in events:
            if event["type"] == "done":
                outcome = {**event, "results": ahead + (event.get("results") or [])}
                break
            if event["type"] == "results":
                ahead += event["results"]
            if event["type"] == "level":
                what = ", ".join(event["modules"])
                progress.update(
                    bar, description=f"{action} level {event['level']}/{event['of']}: {what}"
                )
            elif event["type"] == "state":
                settled[event["instance"]] = event["state"] in SETTLED
                progress.update(bar, completed=sum(settled.values()))
                if not out.json_mode:
                    note = f"  {event['error']}" if event.get("error") else ""
                    line = _line(event["instance"] + "  ", event["state"], note)
                    err.print(line, highlight=False)
    return {"instances": reply["instances"], **outcome}


def _line(before: str, state: str, after: str) -> Any:
    """Text with the state coloured; never markup, and node text made safe."""
    from rich.text import Text

    return Text.assemble(
        safe_text(before), (safe_text(state), STATE_STYLE.get(state, "")), safe_text(after)
    )


def _render_outcome(out: Output, outcome: dict[str, Any]) -> None:
    """One line per instance (failures with their error line), then the verdict."""
    for r in outcome.get("results", []):
        if r["ok"]:
            state = (r.get("state") or {}).get("state", "done")
            out.line(safe_text(f"{r['instance']}: {state}"))
        else:
            error = f"error[{r.get('code')}]: {r.get('message')}"
            out.line(safe_text(f"{r['instance']}: FAILED {error}"))
    if not outcome.get("ok") and outcome.get("message"):
        out.line(safe_text(f"error[{outcome.get('code')}]: {outcome['message']}"))
    total = len(outcome.get("results", []))
    bad = sum(1 for r in outcome.get("results", []) if not r["ok"])
    verdict = "ok" if outcome.get("ok") else f"{bad} of {total} failed"
    out.line(f"{outcome.get('action', '')} {outcome.get('target', '')}: {verdict}")


def _exit_code(outcome: dict[str, Any]) -> int:
    """The shared code's exit status when every failure agrees, else 1."""
    codes = {r.get("code") for r in outcome.get("results", []) if not r["ok"]}
    if len(codes) == 1:
        code = codes.pop()
        return GdosError(code or ErrorCode.OPERATION_FAILED, "").exit_code
    return int(ExitCode.ERROR)


def status(
    target: str = typer.Argument(
        None,
        help="SYSTEM, SYSTEM/MODULE or SYSTEM/MODULE@NODE.",
        autocompletion=complete_service_targets,
    ),
    json: bool = JSON_OPTION,
) -> None:
    output(json).show(request("svc.status", target=target)["instances"], render_status)


def render_status(out: Output, instances: list[dict[str, Any]]) -> None:
    """The instance table of ``gdos status`` and ``gdos system show``."""
    rows = []
    for i in sorted(instances, key=instance_key):
        state = _line("", i["state"], "" if i["node_online"] else " (node offline)")
        rows.append(
            [
                safe_cell(i["instance"]),
                state,
                safe_cell(i["pid"] or "-"),
                human_duration(i["uptime"]) if i["uptime"] else "-",
                safe_cell(i["restarts"]),
                safe_cell(i["version"] or "-"),
                safe_cell(i["error"] or ""),
            ]
        )
    out.table(STATUS_COLUMNS, rows)


def events(
    target: str = typer.Argument(None, help="SYSTEM or SYSTEM/MODULE."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="How many, newest last."),
    follow: bool = typer.Option(
        False, "-f", "--follow", help="Then print new events as they happen (Ctrl-C to stop)."
    ),
    json: bool = JSON_OPTION,
) -> None:
    """Instance state changes, oldest first; -f keeps printing new ones."""
    out = output(json)
    if not follow:
        rows = request("svc.events", target=target, limit=limit)["events"]
        out.show(rows, lambda o, rows: o.lines([_event_line(e) for e in rows]))
        return
    try:
        run(lambda client: _follow_events(client, out, target, limit))
    except KeyboardInterrupt:
        raise typer.Exit(int(ExitCode.CANCELED)) from None


async def _follow_events(client: Any, out: Output, target: str | None, limit: int) -> None:
    """History, then every new stored event: each ``svc.watch`` change wakes a catch-up
    read of the events after the last one printed, so none is missed or repeated."""
    rows = (await client.call("svc.events", target=target, limit=limit))["events"]
    last = 0
    for e in rows:
        _print_event(out, e)
        last = e["id"]
    _, changes = await client.stream("svc.watch", interval=0.5)
    async for _ in changes:
        while True:
            batch = CATCH_UP
            new = await client.call("svc.events", target=target, after=last, limit=batch)
            for e in new["events"]:
                _print_event(out, e)
                last = e["id"]
            if len(new["events"]) < batch:
                break


CATCH_UP = 1000


def _print_event(out: Output, e: dict[str, Any]) -> None:
    """One event as it comes: a JSON document per line with --json."""
    if out.json_mode:
        out.json_lines([e])
    else:
        out.line(_event_line(e))
        out.stdout.flush()


def _event_line(e: dict[str, Any]) -> str:
    when = stamp(e["time"])
    note = f"  {e['error']}" if e["error"] else ""
    return safe_text(f"{when}  {e['system']}/{e['module']}@{e['node']}  {e['state']}{note}")


def adopt(
    node: str = typer.Argument(..., help="Node name.", autocompletion=complete_node_names),
    name: str = typer.Option(..., "--name", help="Instance name (shown as adopted/NAME@NODE)."),
    pid_file: str = typer.Option(None, "--pid-file", help="Find the process by this pid file."),
    process_name: str = typer.Option(None, "--process-name", help="Find it by process name."),
    pid: int = typer.Option(None, "--pid", help="Find it by pid."),
    log: list[str] = typer.Option([], "--log", help="LABEL=PATH of a log file (repeatable)."),
    start_cmd: str = typer.Option(None, "--start-cmd", help="Shell command that starts it."),
    stop_cmd: str = typer.Option(None, "--stop-cmd", help="Shell command that stops it."),
    newest: bool = typer.Option(
        False, "--newest", help="Several processes match --process-name: take the newest."
    ),
    oldest: bool = typer.Option(
        False, "--oldest", help="Several processes match --process-name: take the oldest."
    ),
    replace: bool = typer.Option(
        False, "--replace", help="NAME is adopted already: watch this process instead."
    ),
    json: bool = JSON_OPTION,
) -> None:
    """Watch a process started outside gdos; refuses to guess or to replace silently."""
    if newest and oldest:
        fail(GdosError(ErrorCode.INVALID_ARGUMENT, "give --newest or --oldest, not both."))
    logs = {}
    for item in log:
        label, sep, path = item.partition("=")
        if not sep or not label or not path.startswith("/"):
            fail(GdosError(ErrorCode.INVALID_ARGUMENT, f"--log {item!r}: use LABEL=/ABS/PATH."))
        logs[label] = path
    reply = request(
        "svc.adopt.start",
        node=node,
        name=name,
        pid=pid,
        pid_file=pid_file,
        process_name=process_name,
        start_cmd=start_cmd,
        stop_cmd=stop_cmd,
        logs=logs,
        choose="newest" if newest else "oldest" if oldest else None,
        replace=replace,
    )
    output(json).show(reply, _render_adopted)


def _render_adopted(out: Output, reply: dict[str, Any]) -> None:
    i = reply["instance"]
    out.line(safe_text(f"{i['instance']}: {i['state']} (pid {i['pid']})"))
