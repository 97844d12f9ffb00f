"""The agent's side of ``gdos logs``: which files may be read, and the streams.

A ``log.open`` names an instance's log (``stdout``, ``stderr`` or a
``log_paths`` label of its manifest) or an absolute ``path``. Any file must
resolve (symlinks followed) inside an instance folder or one of the agent's
``--log-root`` folders (default /var/log); anything else, ``..`` included,
is refused with ``path_not_allowed``. History is read in a worker thread
(agent/logreader.py, flat memory); following polls the file every
``POLL_INTERVAL``. Every ``log.data`` frame waits for credit from the
daemon, so a slow client slows the reader instead of growing a queue. A
stream ends with one ``log.end`` (with a code and sentence on failure) or
silently when the daemon sends ``log.close`` or the link is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gdos.agent.logreader import Batch, Follower, History, LineFilter, compile_grep, line_time
from gdos.agent.supervisor import Supervisor, split_instance

from gdos.errors import ErrorCode, GdosError
from gdos.wire.flow import CreditWindow

log = logging.getLogger("gdos.agent.logs")

Send = Callable[[str, dict[str, Any]], None]

DEFAULT_ROOTS = (Path("/var/log"),)
POLL_INTERVAL = 0.05
MAX_STREAMS = 512
MAX_CREDIT = 64
STD_FILES = {"stdout": "stdout.log", "stderr": "stderr.log"}


class LogAccess:
    """Resolves what a request names to a file this agent is allowed to read."""

    def __init__(self, roots: tuple[Path, ...] | list[Path], supervisor: Supervisor) -> None:
        self.roots = [Path(os.path.realpath(r)) for r in roots]
        self.supervisor = supervisor

    def target(self, body: dict[str, Any]) -> Path:
        """The file a ``log.open`` names, checked (GdosError when refused or missing)."""
        if body.get("path"):
            path = Path(str(body["path"]))
            self.check(path)
            return path
        return self._instance_file(str(body.get("instance") or ""), str(body.get("file") or ""))

    def _instance_file(self, instance: str, label: str) -> Path:
        split_instance(instance)
        inst = self.supervisor.instances.get(instance)
        if inst is None:
            raise GdosError(
                ErrorCode.INSTANCE_UNKNOWN,
                f"no instance {instance} on this node; 'gdos status' lists where it runs.",
            )
        label = label or "stdout"
        labels = inst.log_labels
        captured = (inst.logs / STD_FILES["stdout"]).exists()
        if label == "stdout" and inst.kind == "adopted" and labels and not captured:
            label = next(iter(labels))  # gdos captured nothing: its output is its first --log
        if label in STD_FILES:
            path = inst.logs / STD_FILES[label]
        else:
            if label not in labels:
                known = ", ".join(["stdout", "stderr", *sorted(labels)])
                raise GdosError(
                    ErrorCode.INVALID_ARGUMENT,
                    f"{instance} has no log file {label!r}; use --file with one of: {known}.",
                )
            base = inst.version_dir or inst.home
            path = Path(os.path.normpath(base / labels[label]))
        self.check(path, Path(os.path.realpath(inst.home)))
        return path

    def _also(self, extra_root: Path | None) -> list[Path]:
        """Folders readable besides the roots: instance folders (and one instance's home)."""
        return [Path(os.path.realpath(self.supervisor.root)), *([extra_root] if extra_root else [])]

    def check(self, path: Path, extra_root: Path | None = None) -> None:
        """Refuse a path outside the allowed folders, and a missing or special file.

        This gives the operator a clear answer up front; the read itself is
        guarded again by ``opener``, which checks the file it really opened.
        """
        real = check_log_location(path, self.roots, self._also(extra_root))
        if not real.exists():
            raise GdosError(ErrorCode.LOG_NOT_FOUND, f"no file {path} on this node.")
        if not real.is_file():
            raise GdosError(ErrorCode.INVALID_ARGUMENT, f"{path} is not a regular file.")

    def opener(self, path: Path, extra_root: Path | None = None) -> Callable[[Path], int]:
        """An open() for the reader that checks every file it opens (rotations too).

        The name is resolved exactly once: the file is opened as an O_PATH
        handle (no read, no side effect even on a device or FIFO), the path
        the kernel actually reached is read back from /proc/self/fd and
        checked against the roots, and only then is that same handle reopened
        for reading. A symlink swapped in anywhere along the path between the
        check and the read can no longer redirect it.
        """

        def open_checked(item: Path) -> int:
            try:
                return self._open_verified(item, extra_root)
            except GdosError as exc:
                raise PermissionError(errno.EACCES, exc.message) from None

        return open_checked

    def _open_verified(self, item: Path, extra_root: Path | None) -> int:
        _check_name(item)
        handle = os.open(item, os.O_PATH | os.O_CLOEXEC)
        try:
            real = Path(os.readlink(f"/proc/self/fd/{handle}"))
            _check_inside(item, real, self.roots, self._also(extra_root))
            if not _regular(handle):
                raise GdosError(ErrorCode.INVALID_ARGUMENT, f"{item} is not a regular file.")
            # Reopening the handle through /proc reaches the same inode, by no name.
            return os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.close(handle)


def _check_name(path: Path) -> None:
    text = str(path)
    if not path.is_absolute() or "\0" in text or ".." in path.parts:
        raise GdosError(
            ErrorCode.PATH_NOT_ALLOWED,
            f"{text!r} is not allowed: give an absolute path without '..'.",
        )


def check_log_location(
    path: Path, roots: list[Path], also: list[Path] | tuple[Path, ...] = ()
) -> Path:
    """The rule for every log file the agent reads: ``path`` resolved (symlinks
    followed) must lie inside one of the ``--log-root`` folders (or ``also``,
    instance folders); returns the resolved path, PATH_NOT_ALLOWED otherwise.

    ``gdos logs`` applies it before reading and ``gdos adopt --log`` at
    adoption, so an adoption can never name a log that reading would refuse;
    the read itself checks the file it really opened with the same rule.
    """
    _check_name(path)
    real = Path(os.path.realpath(path))
    _check_inside(path, real, roots, also)
    return real


def _check_inside(
    path: Path, real: Path, roots: list[Path], also: list[Path] | tuple[Path, ...]
) -> None:
    if not any(real == root or root in real.parents for root in [*roots, *also]):
        shown = f"{path} (resolves to {real})" if real != path else str(path)
        folders = ", ".join(str(r) for r in roots) or "none"
        raise GdosError(
            ErrorCode.PATH_NOT_ALLOWED,
            f"{shown} is outside the folders this agent may read logs from "
            f"({folders}, and instance folders); start the agent with "
            "--log-root DIR to allow another folder.",
        )


def _regular(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


class LogStream:
    """One file's lines for the daemon: history, then (with follow) what is appended."""

    def __init__(self, body: dict[str, Any], send: Send, access: LogAccess) -> None:
        self.body, self.send, self.access = body, send, access
        self.id: int = body["stream"]
        self.window = CreditWindow(max(1, min(int(body.get("credit", 16)), MAX_CREDIT)))
        self.stamps = bool(body.get("stamps"))
        self.seq = 0
        self.task: asyncio.Future[None] | None = None

    def stop(self) -> None:
        self.window.close()
        if self.task is not None:
            self.task.cancel()

    async def run(self) -> None:
        try:
            await self._stream()
        except GdosError as exc:
            self._end(exc)
            return
        except FileNotFoundError as exc:
            self._end(GdosError(ErrorCode.LOG_NOT_FOUND, f"no file {exc.filename} on this node."))
            return
        except PermissionError as exc:
            self._end(GdosError(ErrorCode.PATH_NOT_ALLOWED, f"cannot read the file: {exc}."))
            return
        except OSError as exc:
            self._end(GdosError(ErrorCode.LOG_NOT_FOUND, f"cannot read the file: {exc}."))
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the daemon must hear how the stream ended
            log.exception("log stream %d failed", self.id)
            self._end(GdosError(ErrorCode.INTERNAL, f"agent error while reading the log: {exc}"))
            return
        self._end(None)

    async def _stream(self) -> None:
        body = self.body
        path = self.access.target(body)
        extra = None
        if not body.get("path"):
            inst = self.access.supervisor.instances.get(str(body.get("instance")))
            extra = Path(os.path.realpath(inst.home)) if inst else None
        opener = self.access.opener(path, extra)
        try:
            regex = compile_grep(body.get("grep"))
        except re.error as exc:
            raise GdosError(
                ErrorCode.INVALID_ARGUMENT, f"--grep is not a valid regex: {exc}."
            ) from None
        since = body.get("since")
        follow = bool(body.get("follow"))
        history = History(path, int(body.get("lines", 100)), regex, since, follow, opener)
        batches = iter(history)
        try:
            while True:
                batch = await asyncio.to_thread(next, batches, None)
                if batch is None:
                    break
                if not await self._emit(batch):
                    return
        finally:
            with contextlib.suppress(ValueError):  # still running in its thread
                batches.close()  # type: ignore[attr-defined]
        if follow:
            await self._follow(Follower(path, history.position, LineFilter(regex, None), opener))

    async def _follow(self, follower: Follower) -> None:
        try:
            while True:
                batches = follower.poll()
                for batch in batches:
                    if not await self._emit(batch):
                        return
                if batches or follower.behind:
                    await asyncio.sleep(0)
                else:
                    await asyncio.sleep(POLL_INTERVAL)
        finally:
            follower.close()

    async def _emit(self, batch: Batch) -> bool:
        if not batch:
            return True
        if not await self.window.acquire():
            return False
        self.seq += 1
        body: dict[str, Any] = {"stream": self.id, "seq": self.seq, "lines": batch}
        body["ts"] = time.time()
        if self.stamps:
            body["stamps"] = [line_time(line) for line in batch]
        self.send("log.data", body)
        return True

    def _end(self, error: GdosError | None) -> None:
        body: dict[str, Any] = {"stream": self.id}
        if error is not None:
            body |= {"code": str(error.code), "message": error.message}
        self.send("log.end", body)


class LogStreams:
    """Every open log stream of this agent, keyed by the daemon's stream id."""

    def __init__(self, send: Send, access: LogAccess) -> None:
        self.send, self.access = send, access
        self.live: dict[int, LogStream] = {}

    def open(self, body: dict[str, Any]) -> None:
        stream_id = body["stream"]
        if stream_id in self.live:
            return
        if len(self.live) >= MAX_STREAMS:
            self.send(
                "log.end",
                {
                    "stream": stream_id,
                    "code": str(ErrorCode.INVALID_ARGUMENT),
                    "message": f"this agent already serves {MAX_STREAMS} log streams; "
                    "close some first.",
                },
            )
            return
        stream = LogStream(body, self.send, self.access)
        self.live[stream_id] = stream
        stream.task = asyncio.ensure_future(stream.run())
        stream.task.add_done_callback(lambda _: self._forget(stream))

    def _forget(self, stream: LogStream) -> None:
        if self.live.get(stream.id) is stream:
            del self.live[stream.id]

    def credit(self, body: dict[str, Any]) -> None:
        stream = self.live.get(body["stream"])
        if stream is not None:
            stream.window.grant(body["credit"])

    def close(self, body: dict[str, Any]) -> None:
        stream = self.live.pop(body["stream"], None)
        if stream is not None:
            stream.stop()

    def close_all(self) -> None:
        """The link is gone: the daemon has ended these streams on its side."""
        for stream in list(self.live.values()):
            stream.stop()
        self.live.clear()
