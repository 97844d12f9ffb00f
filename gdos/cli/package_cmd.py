"""``gdos package push | list | show | rm``: the versioned package store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from gdos.cli.common import JSON_OPTION, human_bytes, request, run, stamp
from gdos.cli.output import Output, dumps, fail, output
from gdos.cli.tables import Column
from gdos.errors import ErrorCode, GdosError
from gdos.names import natural_key
from gdos.safe_text import safe_cell

app = typer.Typer(help="Push, list, inspect and remove packages.", no_args_is_help=True)
UPLOAD_WINDOW = 8  # chunks in flight to the daemon
COLUMNS = [
    Column("NAME"),
    Column("VERSION"),
    Column("SIZE", drop=2),
    Column("SHA256", drop=3),
    Column("PUSHED", drop=1),
    Column("BY", drop=4),
    Column("DESCRIPTION", drop=5, wrap=True),
]


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
    out = output(json)
    out.show(run(lambda client: _upload(client, file, size, out)), _render_push)


def _render_push(out: Output, reply: dict[str, Any]) -> None:
    p = reply["package"]
    verb = "stored" if reply["created"] else "already stored (same bytes)"
    out.line(
        f"{p['name']}@{p['version']} {verb}: {human_bytes(p['size'])}, sha256 {p['sha256'][:12]}"
    )


async def _upload(client: Any, file: Path, size: int, out: Output) -> dict[str, Any]:
    """Send the file in chunks, a few in flight, hashing as it goes."""
    import asyncio
    import hashlib

    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    begun = await client.call("package.upload", size=size, filename=file.name)
    upload, chunk = begun["upload"], begun["chunk"]
    digest = hashlib.sha256()
    pending: set[asyncio.Task[Any]] = set()
    bar_console = out.console(stderr=True)
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=bar_console,
        disable=out.json_mode or not bar_console.is_terminal,
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
    output(json).show(request("package.list", name=name)["packages"], _render_list)


def _render_list(out: Output, packages: list[dict[str, Any]]) -> None:
    rows = []
    for p in sorted(packages, key=lambda p: natural_key(p["name"])):  # stable: pushed order kept
        when = stamp(p["pushed_at"], "%Y-%m-%d %H:%M")
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
    out.table(COLUMNS, rows)


@app.command()
def show(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION (default: the latest pushed)."),
    json: bool = JSON_OPTION,
) -> None:
    """One package version and its validated manifest."""
    name, version = split_ref(ref)
    output(json).show(request("package.show", name=name, version=version)["package"], _render)


def _render(out: Output, package: dict[str, Any]) -> None:
    out.line(
        f"{package['name']}@{package['version']}  {human_bytes(package['size'])}  "
        f"sha256 {package['sha256']}"
    )
    out.line(dumps(package["manifest"], indent=2))


@app.command()
def rm(
    ref: str = typer.Argument(..., help="NAME@VERSION."),
    json: bool = JSON_OPTION,
) -> None:
    """Remove a package version (refused while an instance uses it)."""
    name, version = split_ref(ref)
    if not version:
        fail(GdosError(ErrorCode.INVALID_ARGUMENT, "give NAME@VERSION; see 'gdos package list'."))
    output(json).show(
        request("package.rm", name=name, version=version),
        lambda out, r: out.line(f"removed {r['removed']}"),
    )
