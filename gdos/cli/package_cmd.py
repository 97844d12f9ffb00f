"""``gdos package push | list | show | rm``: the versioned package store."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import typer

from gdos.cli.common import JSON_OPTION, console, fail, human_bytes, print_json, request, run
from gdos.errors import ErrorCode, GdosError
from gdos.names import natural_key
from gdos.safe_text import safe_cell

app = typer.Typer(help="Push, list, inspect and remove packages.", no_args_is_help=True)
UPLOAD_WINDOW = 8  # chunks in flight to the daemon


def split_ref(ref: str) -> tuple[str, str | None]:
    """'web@1.2' -> ('web', '1.2'); 'web' -> ('web', None)."""
    name, _, version = ref.partition("@")
    return name, version or None


@app.command()
def push(
    file: Path = typer.Argument(..., help="The package zip (service.json at its root)."),
    json: bool = JSON_OPTION,
) -> None:
    """Validate and store a package; the same bytes twice is a no-op."""
    if not file.is_file():
        fail(GdosError(ErrorCode.INVALID_ARGUMENT, f"{file} is not a readable file."))
    size = file.stat().st_size
    show = not json and sys.stderr.isatty()
    reply = run(lambda client: _upload(client, file, size, show))
    if json:
        print_json(reply)
        return
    p = reply["package"]
    verb = "stored" if reply["created"] else "already stored (same bytes)"
    sys.stdout.write(
        f"{p['name']}@{p['version']} {verb}: {human_bytes(p['size'])}, sha256 {p['sha256'][:12]}\n"
    )


async def _upload(client: Any, file: Path, size: int, show_progress: bool) -> dict[str, Any]:
    """Send the file in chunks, a few in flight, hashing as it goes."""
    import asyncio
    import hashlib

    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    begun = await client.call("package.upload", size=size, filename=file.name)
    upload, chunk = begun["upload"], begun["chunk"]
    digest = hashlib.sha256()
    pending: set[asyncio.Task[Any]] = set()
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console().__class__(stderr=True),
        disable=not show_progress,
        transient=True,
    )
    with progress, file.open("rb") as source:
        bar = progress.add_task(f"push {file.name}", total=size)
        offset = 0
        while data := source.read(chunk):
            digest.update(data)
            call = client.call("package.chunk", upload=upload, offset=offset, data=data)
            pending.add(asyncio.ensure_future(call))
            offset += len(data)
            if len(pending) >= UPLOAD_WINDOW:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
                    progress.advance(bar, chunk)
        for task in pending:
            await task
        progress.update(bar, completed=size)
    result: dict[str, Any] = await client.call(
        "package.commit", timeout=600.0, upload=upload, sha256=digest.hexdigest()
    )
    return result


@app.command("list")
def list_packages(
    name: str = typer.Argument(None, help="Only this package's versions."),
    json: bool = JSON_OPTION,
) -> None:
    """Every stored package version."""
    packages = request("package.list", name=name)["packages"]
    if json:
        print_json(packages)
        return
    from gdos.cli.tables import Column, print_table

    columns = [
        Column("NAME"),
        Column("VERSION"),
        Column("SIZE", drop=2),
        Column("SHA256", drop=3),
        Column("PUSHED", drop=1),
        Column("BY", drop=4),
        Column("DESCRIPTION", drop=5, wrap=True),
    ]
    rows = []
    for p in sorted(packages, key=lambda p: natural_key(p["name"])):  # stable: pushed order kept
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(p["pushed_at"]))
        rows.append(
            [
                p["name"],
                p["version"],
                human_bytes(p["size"]),
                p["sha256"][:12],
                when,
                p["pushed_by"] or "-",
                safe_cell(p["description"] or ""),
            ]
        )
    print_table(columns, rows)


@app.command()
def show(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION (default: the latest pushed)."),
    json: bool = JSON_OPTION,
) -> None:
    """One package version and its validated manifest."""
    name, version = split_ref(ref)
    package = request("package.show", name=name, version=version)["package"]
    if json:
        print_json(package)
        return
    import json as jsonlib

    sys.stdout.write(
        f"{package['name']}@{package['version']}  {human_bytes(package['size'])}  "
        f"sha256 {package['sha256']}\n{jsonlib.dumps(package['manifest'], indent=2)}\n"
    )


@app.command()
def rm(
    ref: str = typer.Argument(..., help="NAME@VERSION."),
    json: bool = JSON_OPTION,
) -> None:
    """Remove a package version (refused while an instance uses it)."""
    name, version = split_ref(ref)
    if not version:
        fail(GdosError(ErrorCode.INVALID_ARGUMENT, "give NAME@VERSION; see 'gdos package list'."))
    reply = request("package.rm", name=name, version=version)
    if json:
        print_json(reply)
        return
    sys.stdout.write(f"removed {reply['removed']}\n")
