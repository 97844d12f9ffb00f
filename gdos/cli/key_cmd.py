"""``gdos key list | accept | reject | delete``: who may join the mesh."""

from __future__ import annotations

import sys

import typer

from gdos.cli.common import JSON_OPTION, ago, console, print_json, quiet_call, request
from gdos.safe_text import safe_cell, safe_text

app = typer.Typer(help="Accept, reject and delete agent keys.", no_args_is_help=True)


def _complete_key_names(incomplete: str) -> list[str]:
    reply = quiet_call("key.list")
    keys = reply.get("keys", []) if reply else []
    return sorted({k["name"] for k in keys if str(k.get("name", "")).startswith(incomplete)})


NAME = typer.Argument(..., help="Node name of the key.", autocompletion=_complete_key_names)
STYLE = {"accepted": "green", "pending": "yellow", "rejected": "red"}


@app.command("list")
def list_keys(json: bool = JSON_OPTION) -> None:
    """Every key the daemon has seen, pending first."""
    keys = request("key.list")["keys"]
    if json:
        print_json(keys)
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("NAME", "STATUS", "FINGERPRINT", "VIA", "ADDRESS", "SEEN"):
        table.add_column(column, no_wrap=True)
    order = {"pending": 0, "accepted": 1, "rejected": 2}
    for k in sorted(keys, key=lambda k: (order.get(k["status"], 3), k["name"])):
        table.add_row(
            safe_cell(k["name"]),
            f"[{STYLE.get(k['status'], 'white')}]{k['status']}[/]",
            k["fingerprint"],
            k.get("via") or "-",
            safe_cell(k.get("address") or "-"),
            ago(k.get("created")),
        )
    console().print(table)


def _report(verb: str, keys: list[dict], json: bool) -> None:
    if json:
        print_json(keys)
        return
    for k in keys:
        sys.stdout.write(safe_text(f"{verb} key {k['fingerprint']} of {k['name']}") + "\n")
    if not keys:
        sys.stdout.write("no pending keys\n")


@app.command()
def accept(
    name: str | None = typer.Argument(
        None, help="Node name of the pending key.", autocompletion=_complete_key_names
    ),
    all_: bool = typer.Option(False, "--all", help="Accept every pending key."),
    json: bool = JSON_OPTION,
) -> None:
    """Accept a pending key so that node may join."""
    _report("accepted", request("key.accept", name=name, all=all_ or None)["keys"], json)


@app.command()
def reject(name: str = NAME, json: bool = JSON_OPTION) -> None:
    """Reject a key: its agent can no longer connect."""
    _report("rejected", request("key.reject", name=name)["keys"], json)


@app.command()
def delete(name: str = NAME, json: bool = JSON_OPTION) -> None:
    """Delete a node's keys and disconnect it; it shows as pending if it dials again."""
    _report("deleted", request("key.delete", name=name)["keys"], json)
