"""Adoption: how the supervisor finds a process that gdos did not start.

An adoption names the process by pid, by pid file or by process name (tried
in that order). A pid file is read as its first word; while the file is
empty or half written (``echo $! > FILE`` truncates first) that is "not yet",
never an error.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gdos.agent.procs import ProcRef, find_by_name, proc_ref

from gdos.errors import ErrorCode, GdosError

CHOICES = ("newest", "oldest")


@dataclass(frozen=True)
class Adoption:
    """How to find (and maybe start and stop) a process gdos did not start."""

    pid: int | None = None
    pid_file: str | None = None
    process_name: str | None = None
    choose: str | None = None  # newest, oldest, or None: refuse several matches
    start_cmd: str | None = None
    stop_cmd: str | None = None
    logs: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Adoption:
        def text(key: str) -> str | None:
            return str(data[key]) if data.get(key) else None

        pid = None
        with contextlib.suppress(TypeError, ValueError):
            pid = int(data["pid"]) if data.get("pid") else None
        logs = data.get("logs")
        return cls(
            pid=pid,
            pid_file=text("pid_file"),
            process_name=text("process_name"),
            choose=text("choose"),
            start_cmd=text("start_cmd"),
            stop_cmd=text("stop_cmd"),
            logs={str(k): str(v) for k, v in logs.items()} if isinstance(logs, dict) else {},
        )

    def describe(self) -> str:
        parts = [
            f"{key} {value!r}"
            for key, value in (
                ("pid", self.pid),
                ("pid_file", self.pid_file),
                ("process_name", self.process_name),
            )
            if value
        ]
        return " or ".join(parts) or "nothing (give a pid, pid_file or process_name)"


def locate(
    adopt: Adoption, since: float | None, use_pid: bool, strict: bool = False
) -> ProcRef | None:
    """The process an adoption points at: by pid, pid file, then process name.

    Several processes with the name are resolved by the adoption's ``choose``
    (``newest`` or ``oldest``); without one, ``strict`` (the operator's adopt)
    refuses and lists them, while a relaunch by start_cmd takes the oldest.
    """
    if use_pid and adopt.pid:
        ref = proc_ref(adopt.pid)
        if ref is not None:
            return ref
    if adopt.pid_file:
        with contextlib.suppress(OSError, ValueError):
            ref = pid_file_ref(Path(adopt.pid_file))
            if ref is not None and (since is None or ref.create_time >= since - 0.05):
                return ref
    if adopt.process_name:
        found = find_by_name(adopt.process_name, since)
        if len(found) > 1 and strict and adopt.choose not in CHOICES:
            raise _ambiguous(adopt.process_name, found)
        if found:
            return found[-1] if adopt.choose == "newest" else found[0]
    return None


def pid_file_ref(path: Path) -> ProcRef | None:
    """The process a pid file names, or None while it is empty or half written.

    A start command such as ``echo $! > FILE`` truncates the file before it
    writes the pid, so a poll can read nothing: that is "not yet", not an error.
    """
    words = path.read_text(encoding="utf-8").split()
    if not words or not words[0].isdigit():
        return None
    return proc_ref(int(words[0]))


def _ambiguous(name: str, found: list[ProcRef], shown: int = 10) -> GdosError:
    """PROCESS_AMBIGUOUS, listing the candidates (pid, start time, command line)."""
    lines = [
        f"{len(found)} processes match process name {name!r}; adopt one with --pid PID, "
        "or add --newest or --oldest:"
    ]
    for ref in found[:shown]:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ref.create_time))
        lines.append(f"  pid {ref.pid}  started {started}  {_command_line(ref.pid)}")
    if len(found) > shown:
        lines.append(f"  ... and {len(found) - shown} more")
    return GdosError(ErrorCode.PROCESS_AMBIGUOUS, "\n".join(lines))


def _command_line(pid: int, width: int = 100) -> str:
    import psutil

    try:
        text = " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return "(gone)"
    return text if len(text) <= width else text[: width - 1] + "…"
