"""Raw file descriptors driven by the asyncio loop, without threads.

The agent's pty master and pipes and the CLI's stdin are plain descriptors.
These helpers wait for readiness on the loop's selector and then do one
``read`` or ``write``, so a caller reads only once it holds credit: flow
control stays with the caller and nothing buffers in between. The
descriptors must be non-blocking, except a tty or pipe the caller only reads
after ``wait_readable`` said so (the CLI's stdin, which it shares with the
shell that started it and so must not switch to non-blocking).
"""

from __future__ import annotations

import asyncio
import errno
import os
import select


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def wait_readable(fd: int, timeout: float | None = None) -> bool:
    """Wait until ``fd`` is readable (or at EOF); False when ``timeout`` passed first."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, _wake, future)
    try:
        if timeout is None:
            await future
            return True
        done, _ = await asyncio.wait({future}, timeout=timeout)
        return bool(done)
    finally:
        loop.remove_reader(fd)


async def wait_writable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()
    loop.add_writer(fd, _wake, future)
    try:
        await future
    finally:
        loop.remove_writer(fd)


def ready_now(fd: int) -> bool:
    """Whether a read of ``fd`` would return at once (data, EOF or an error)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def read_now(fd: int, size: int) -> bytes | None:
    """What ``fd`` holds now: data, ``b""`` at its end, None when it would block.

    A pty master reports the end (all slave descriptors closed) as EIO.
    """
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno == errno.EIO:
            return b""
        raise


async def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to a non-blocking ``fd``, waiting while it is full."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            written = 0
        view = view[written:]
        if view:
            await wait_writable(fd)
