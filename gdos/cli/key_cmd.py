"""``gdos key list | accept | reject | delete``: who may join the mesh."""

from __future__ import annotations

from typing import Any

import typer

from gdos.cli.common import JSON_OPTION, ago, quiet_call, request
from gdos.cli.output import Output, fail, output
from gdos.cli.tables import Column
from gdos.errors import ErrorCode, GdosError
from gdos.names import natural_key
from gdos.safe_text import safe_cell, safe_text

app = typer.Typer(help="Accept, reject and delete agent keys.", no_args_is_help=True)


def _complete_key_names(incomplete: str) -> list[str]:
    reply = quiet_call("key.list")
    keys = reply.get("keys", []) if reply else []
    words = {k["name"] for k in keys} | {k["fingerprint"] for k in keys}
    return sorted((w for w in words if str(w).startswith(incomplete)), key=natural_key)


KEY = typer.Argument(
    ...,
    help="Fingerprint (from 'gdos key list'), or node name when only one key has it.",
    autocompletion=_complete_key_names,
)
STYLE = {"accepted": "green", "pending": "yellow", "rejected": "red"}
# the fingerprint is what 'accept/reject/delete' take: never dropped or cut
COLUMNS = [
    Column("NAME"),
    Column("STATUS"),
    Column("FINGERPRINT"),
    Column("VIA", drop=2),
    Column("ADDRESS", drop=1),
    Column("SEEN", drop=3),
]


@app.command("list")
def list_keys(json: bool = JSON_OPTION) -> None:
    """Every key the daemon has seen, pending first, with its fingerprint."""
    output(json).show(request("key.list")["keys"], _render_list)


def _render_list(out: Output, keys: list[dict[str, Any]]) -> None:
    order = {"pending": 0, "accepted": 1, "rejected": 2}
    rows = []
    for k in sorted(keys, key=lambda k: (order.get(k["status"], 3), natural_key(k["name"]))):
        mark = "!" if k.get("name_held") else ""
        rows.append(
            [
                safe_cell(k["name"]),
                f"[{STYLE.get(k['status'], 'white')}]{k['status']}{mark}[/]",
                safe_cell(k["fingerprint"]),
                safe_cell(k.get("via") or "-"),
                safe_cell(k.get("address") or "-"),
                ago(k.get("created")),
            ]
        )
    out.table(COLUMNS, rows)
    if any(k.get("name_held") for k in keys):
        out.line(
            "pending! claims the name of an accepted node: accept, reject or delete it "
            "by its fingerprint"
        )


def _report(verb: str, keys: list[dict[str, Any]], json: bool) -> None:
    def render(out: Output, keys: list[dict[str, Any]]) -> None:
        out.lines([safe_text(f"{verb} key {k['fingerprint']} of {k['name']}") for k in keys])
        if not keys:
            out.line("no pending keys")

    output(json).show(keys, render)


@app.command()
def accept(
    key: str | None = typer.Argument(
        None,
        help="Fingerprint of the pending key, or its node name when only one pending key has it.",
        autocompletion=_complete_key_names,
    ),
    all_: bool = typer.Option(
        False, "--all", help="Accept every pending key that can be; list the ones refused."
    ),
    json: bool = JSON_OPTION,
) -> None:
    """Accept a pending key so that node may join.

    With --all, every pending key whose name is free and claimed by no other
    pending key is accepted (in one transaction); each refused key is listed
    with why, stays pending, and the command exits 2.
    """
    reply = request("key.accept", name=key, all=all_ or None)
    refused = reply.get("refused") or []
    if json and all_:
        output(json).json({"keys": reply["keys"], "refused": refused})
    else:
        _report("accepted", reply["keys"], json)
    if refused:
        for k in refused:
            output().note(f"not accepted: key {k['fingerprint']} of {k['name']}: {k['reason']}")
        fail(
            GdosError(
                ErrorCode.KEY_AMBIGUOUS,
                f"{len(refused)} pending key(s) were not accepted (listed above) and stay "
                "pending; accept each by its fingerprint once its name is free, or reject it.",
            )
        )


@app.command()
def reject(key: str = KEY, json: bool = JSON_OPTION) -> None:
    """Reject a key: its agent can no longer connect."""
    _report("rejected", request("key.reject", name=key)["keys"], json)


@app.command()
def delete(key: str = KEY, json: bool = JSON_OPTION) -> None:
    """Forget a key and disconnect its node; if it dials again it is only pending."""
    _report("deleted", request("key.delete", name=key)["keys"], json)
