"""``gdos logs TARGET...``: tail, search and follow logs on nodes.

The reading happens on the agents (history read backwards, grep streamed
forwards, follow by polling); this module only resolves the options, prints
the merged lines and turns the sources' endings into an exit code. With more
than one source each line is prefixed ``node system/module | `` (``node | ``
for --path).
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any

import typer

from gdos.cli.common import JSON_OPTION, complete_log_targets, parse_duration, run
from gdos.cli.output import HOST_COLOURS, Output, fail, output
from gdos.errors import ErrorCode, ExitCode, GdosError
from gdos.safe_text import safe_line, safe_text


def register(app: typer.Typer) -> None:
    app.command("logs", no_args_is_help=True)(logs_command)


def logs_command(
    targets: list[str] = typer.Argument(
        ...,
        help="SYSTEM/MODULE@NODE, SYSTEM/MODULE, SYSTEM (all their instances), "
        "or NODE with --path.",
        autocompletion=complete_log_targets,
    ),
    file: str | None = typer.Option(
        None, "--file", help="stdout (default), stderr, or a log_paths label of the manifest."
    ),
    lines: int | None = typer.Option(
        None,
        "-n",
        "--lines",
        help="Last N lines (default 100; all matches with --grep or --since; -1 for all).",
    ),
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing new lines."),
    grep: str | None = typer.Option(None, "--grep", "-g", help="Only lines matching REGEX."),
    since: str | None = typer.Option(
        None, "--since", help="Only lines newer than 15m, 2h, 1d or an ISO time."
    ),
    path: str | None = typer.Option(
        None, "--path", help="Read this absolute file on the named NODEs (see --log-root)."
    ),
    json: bool = JSON_OPTION,
) -> None:
    """Show logs: gdos logs shop/web -n 50, gdos logs web-1 --path /var/log/syslog -f."""
    if lines is None:
        lines = -1 if (grep or since) else 100
    if lines < -1:
        fail(GdosError(ErrorCode.INVALID_ARGUMENT, "-n must be 0 or more (or -1 for all)."))
    request: dict[str, Any] = {
        "targets": targets,
        "file": file,
        "path": path,
        "lines": lines,
        "grep": grep or None,
        "since": parse_since(since) if since else None,
        "follow": follow,
        "stamps": json,
    }
    out = output(json)
    try:
        code = run(lambda client: _print(client, request, out))
    except KeyboardInterrupt:
        code = int(ExitCode.CANCELED)  # Ctrl-C, like tail -f
    except BrokenPipeError:  # `| head`: the reader has seen enough
        _silence_stdout()
        code = int(ExitCode.OK)
    raise typer.Exit(code)


def parse_since(text: str) -> float:
    """'15m', '2h', '90s', '2d' ago, or an ISO 8601 time (local when it has no zone)."""
    from datetime import datetime

    text = text.strip()
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        pass
    if re.match(r"^\d+(\.\d+)?[smhd]?$", text):
        return time.time() - parse_duration(text, "--since")
    fail(
        GdosError(
            ErrorCode.INVALID_ARGUMENT,
            f"--since {text!r} is neither a duration (15m, 2h, 1d) nor an ISO time "
            "(2024-05-01T10:00:00).",
        )
    )


async def _print(client: Any, request: dict[str, Any], out: Output) -> int:
    reply, events = await client.stream("logs.open", **request)
    printer = _Printer(reply["sources"], out)
    async for event in events:
        if event["type"] == "lines":
            printer.lines(event)
        elif event["type"] == "end":
            printer.end(event)
    return printer.exit_code


class _Printer:
    """Writes lines as bytes (logs need not be UTF-8), prefixed when sources merge."""

    def __init__(self, sources: list[dict[str, Any]], out: Output) -> None:
        self.out = out
        self.exit_code = int(ExitCode.OK)
        self.prefixes: dict[tuple[str, str | None, str], bytes] = {}
        if len(sources) > 1:
            width = max(len(s["node"]) for s in sources)
            inst_width = max(len(s["instance"] or "") for s in sources)
            for index, s in enumerate(sources):
                label = f"{s['node']:<{width}}"
                if s["instance"]:
                    label += f" {s['instance']:<{inst_width}}"
                text = out.paint(label, HOST_COLOURS[index % len(HOST_COLOURS)]) + " | "
                self.prefixes[_key(s)] = text.encode()

    def lines(self, event: dict[str, Any]) -> None:
        if self.out.json_mode:
            self._json(event)
            return
        prefix = self.prefixes.get(_key(event), b"")
        if self.out.tty:  # a node's ESC sequences are shown, not run; piped stays byte-faithful
            lines = [safe_line(line).encode() for line in event["lines"]]
            data = b"".join(prefix + line + b"\n" for line in lines)
        elif prefix:
            data = b"".join(prefix + line + b"\n" for line in event["lines"])
        else:
            data = b"\n".join(event["lines"]) + b"\n"
        self.out.raw(data)

    def _json(self, event: dict[str, Any]) -> None:
        """One JSON document per line, stamped (the line decoded as UTF-8)."""
        stamps = event.get("stamps") or []
        rows = []
        for index, line in enumerate(event["lines"]):
            stamp = stamps[index] if index < len(stamps) else None
            row = {
                "node": event["node"],
                "instance": event["instance"],
                "file": event["file"],
                "line": line,
                "ts": stamp if stamp is not None else event.get("ts"),
            }
            rows.append(row)
        self.out.json_lines(rows)

    def end(self, event: dict[str, Any]) -> None:
        if not event.get("code"):
            return
        where = event["node"] + (f" {event['instance']}" if event.get("instance") else "")
        error = GdosError(event["code"], f"{where}: {event['message']}")
        self.out.error(safe_text(error))  # the code and sentence came from a node
        self.out.stderr.flush()
        if self.exit_code == ExitCode.OK:
            self.exit_code = error.exit_code


def _key(item: dict[str, Any]) -> tuple[str, str | None, str]:
    return (item["node"], item.get("instance"), item["file"])


def _silence_stdout() -> None:
    """After a broken pipe, keep Python from complaining when it flushes stdout at exit."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
