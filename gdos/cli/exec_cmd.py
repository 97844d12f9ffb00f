"""``gdos exec TARGETS -- CMD [ARGS...]``: run a command across nodes.

Output streams per host as it arrives (host-prefixed, coloured on a tty),
then a summary. The exit code tells scripts what happened (docs/exec.md): 0 only
when every host succeeded. Ctrl-C cancels the task on every node; a second
Ctrl-C leaves at once.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand

from gdos.cli.common import complete_node_names, human_duration, parse_duration, parse_env
from gdos.cli.output import HOST_COLOURS, Output, fail, output
from gdos.errors import ErrorCode, ExitCode, GdosError
from gdos.model import HostStatus
from gdos.safe_text import safe_line, safe_text
from gdos.units import STATUS_STYLE

# The first of these among a task's hosts decides the exit code (docs/exec.md).
EXIT_CODES = (
    (HostStatus.CANCELED, ExitCode.CANCELED),
    (HostStatus.UNREACHABLE, ExitCode.EXEC_UNREACHABLE),
    (HostStatus.TIMED_OUT, ExitCode.EXEC_TIMED_OUT),
    (HostStatus.FAILED, ExitCode.EXEC_FAILED),
)


class CommandAfterDashDash(TyperCommand):
    """Keeps everything after the first ``--`` as the remote command, untouched."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta["gdos.remote_argv"] = []
        if "--" not in args:
            return super().parse_args(ctx, args)
        cut = args.index("--")
        ctx.meta["gdos.remote_argv"] = args[cut + 1 :]
        # `gdos exec -- cmd` is not a bare `gdos exec`: report the missing target, not help.
        shows_help, self.no_args_is_help = self.no_args_is_help, False
        try:
            return super().parse_args(ctx, args[:cut])
        finally:
            self.no_args_is_help = shows_help


def exit_code_for(statuses: list[str]) -> int:
    """The documented exit code for a set of host statuses."""
    for status, code in EXIT_CODES:
        if status in statuses:
            return int(code)
    return int(ExitCode.OK)


def register(app: typer.Typer) -> None:
    app.command("exec", cls=CommandAfterDashDash, no_args_is_help=True)(exec_command)


def exec_command(
    ctx: typer.Context,
    targets: list[str] = typer.Argument(
        None, help="Node names.", autocompletion=complete_node_names
    ),
    all_: bool = typer.Option(False, "--all", "-a", help="Every enrolled node."),
    match: str | None = typer.Option(None, "--match", "-m", help="Nodes matching a glob."),
    timeout: str = typer.Option("300s", "--timeout", "-t", help="Per-host time limit."),
    shell: bool = typer.Option(False, "--shell", help="Run the command through /bin/sh -c."),
    env: list[str] = typer.Option(None, "--env", "-e", help="K=V for the command (repeat)."),
    cwd: str | None = typer.Option(None, "--cwd", help="Working directory on the node."),
    user: str | None = typer.Option(None, "--user", "-u", help="Run as this user (agent root)."),
    include_drained: bool = typer.Option(
        False, "--include-drained", help="Also run on nodes in maintenance."
    ),
    json: bool = typer.Option(False, "--json", help="Print one JSON result at the end."),
) -> None:
    """Run a command on nodes: gdos exec web-1 web-2 -- uptime."""
    argv = ctx.meta.get("gdos.remote_argv") or []
    if not argv:
        fail(
            GdosError(
                ErrorCode.INVALID_ARGUMENT,
                "give the command after '--', e.g. gdos exec --all -- uptime.",
            )
        )
    if not (targets or all_ or match):
        fail(GdosError(ErrorCode.NO_TARGET, "name nodes, or use --all or --match GLOB."))
    request = {
        "argv": argv,
        "targets": targets or [],
        "all": all_,
        "match": match,
        "timeout": parse_duration(timeout, "--timeout"),
        "shell": shell,
        "env": parse_env(env or []),
        "cwd": cwd,
        "user": user,
        "allow_drained": include_drained,
        "follow": True,
    }
    from gdos.cli.common import run

    out = output(json)
    code = run(lambda client: _follow(client, request, out))
    raise typer.Exit(code)


async def _follow(client: Any, request: dict[str, Any], out: Output) -> int:
    import asyncio
    import signal

    reply, events = await client.stream("exec.start", **request)
    task_id = reply["task"]
    printer = _Printer(out)
    for host in reply["hosts"]:
        printer.host(host)
    loop = asyncio.get_running_loop()
    interrupts = [0]
    cancels: list[asyncio.Future[Any]] = []

    def on_interrupt() -> None:
        interrupts[0] += 1
        if interrupts[0] > 1:
            out.note("\nleaving; the task keeps being canceled by the daemon")
            raise SystemExit(int(ExitCode.CANCELED))
        out.note(f"\ncanceling task {task_id} (Ctrl-C again to leave now)")
        cancels.append(asyncio.ensure_future(client.call("task.cancel", id=task_id)))

    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    async for event in events:
        if event["type"] == "output":
            printer.output(event)
        elif event["type"] == "host":
            printer.host(event)
        elif event["type"] == "notice":  # e.g. storage_failed: results wait, none is lost
            out.note(f"waiting: {GdosError(event['code'], event['message'])}")
    loop.remove_signal_handler(signal.SIGINT)
    task = (await client.call("task.show", id=task_id))["task"]
    printer.flush_all()
    out.show(task, _summary)
    return exit_code_for([h["status"] for h in task["hosts"]])


class _Printer:
    """Prints complete lines per host and stream, prefixed with the host name."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.quiet = out.json_mode
        self.partial: dict[tuple[str, str], bytes] = {}
        self.colours: dict[str, int] = {}
        self.width = 0

    def prefix(self, node: str) -> str:
        self.width = max(self.width, len(node))
        label = f"{node:<{self.width}} |"
        colour = self.colours.setdefault(node, HOST_COLOURS[len(self.colours) % len(HOST_COLOURS)])
        return self.out.paint(label, colour)

    def output(self, event: dict[str, Any]) -> None:
        if self.quiet:
            return
        key = (event["node"], event["stream"])
        data = self.partial.pop(key, b"") + event["data"]
        *lines, rest = data.split(b"\n")
        if rest:
            self.partial[key] = rest
        self._write(key, lines)

    def _write(self, key: tuple[str, str], lines: list[bytes]) -> None:
        """On a terminal each line is made safe (a node's ESC sequences are shown,
        not run); piped, the bytes go out exactly as the node sent them."""
        stderr = key[1] == "stderr"
        prefix = self.prefix(key[0])
        if self.out.tty:
            stream = self.out.stderr if stderr else self.out.stdout
            stream.write("".join(f"{prefix} {safe_line(line)}\n" for line in lines))
            stream.flush()
            return
        raw = prefix.encode() + b" "
        self.out.raw(b"".join(raw + line + b"\n" for line in lines), stderr=stderr)

    def host(self, event: dict[str, Any]) -> None:
        node = event["node"]
        for stream in ("stdout", "stderr"):
            rest = self.partial.pop((node, stream), None)
            if rest and not self.quiet:
                self._write((node, stream), [rest])
        if event["status"] == HostStatus.UNREACHABLE and not self.quiet:
            self.out.note(f"{self.prefix(node)} unreachable: {safe_text(event['reason'])}")

    def flush_all(self) -> None:
        for key, rest in list(self.partial.items()):
            if not self.quiet:
                self._write(key, [rest])
        self.partial.clear()


def _summary(out: Output, task: dict[str, Any]) -> None:
    """The lines after the streamed output: each host's status, exit code, duration
    and reason, then how many ended which way.

    Written as plain columns, not through Rich: exec is the command operators
    run most, and importing Rich's table would add ~40 ms to every run
    (bench/before_after.py). Status colours are the shared palette's.
    """
    hosts = task["hosts"]
    width = max([len(safe_text(h["node"])) for h in hosts] + [4])
    lines = [
        f"\ntask {task['id']}: {task['status']}",
        f"{'HOST':<{width}}  {'STATUS':<11}  {'EXIT':>4}  {'DURATION':>8}  REASON",
    ]
    for h in hosts:
        status = h["status"]
        shown = out.paint(f"{status:<11}", _SGR.get(STATUS_STYLE.get(status, ""), 0))
        duration = (h["ended"] - h["started"]) if h["ended"] and h["started"] else None
        code = "-" if h["exit_code"] is None else str(h["exit_code"])
        lines.append(
            f"{safe_text(h['node']):<{width}}  {shown}  {code:>4}  "
            f"{human_duration(duration):>8}  {safe_text(h['reason'] or '')}".rstrip()
        )
    counts: dict[str, int] = {}
    for h in hosts:
        counts[h["status"]] = counts.get(h["status"], 0) + 1
    lines.append(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    out.lines(lines)


# SGR codes of the palette's colour names (gdos.units.STATUS_STYLE), for plain lines.
_SGR = {"green": 32, "red": 31, "yellow": 33, "magenta": 35, "cyan": 36}
