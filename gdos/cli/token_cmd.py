"""``gdos token create | list``: join tokens for new agents."""

from __future__ import annotations

import time
from typing import Any

import typer

from gdos.cli.common import JSON_OPTION, human_duration, parse_duration, request
from gdos.cli.output import Output, output
from gdos.cli.tables import Column

app = typer.Typer(help="Create join tokens so new agents enroll themselves.", no_args_is_help=True)
COLUMNS = [Column("ID"), Column("EXPIRES IN"), Column("USES LEFT"), Column("USED", drop=1)]


@app.command()
def create(
    ttl: str = typer.Option("1h", "--ttl", help="How long the token is valid (30m, 1h, 7d)."),
    uses: int | None = typer.Option(None, "--uses", min=1, help="How many agents may use it."),
    address: str | None = typer.Option(
        None, "--address", help="Mesh address agents dial (tcp://HOST:PORT)."
    ),
    json: bool = JSON_OPTION,
) -> None:
    """Print a token: 'gdos agent run --join TOKEN' on a new node enrolls it."""
    reply = request("token.create", ttl=parse_duration(ttl, "--ttl"), uses=uses, address=address)

    def render(out: Output, reply: dict[str, Any]) -> None:
        out.line(reply["token"])  # alone on stdout, for $(gdos token create)
        limit = "unlimited uses" if reply["uses"] is None else f"{reply['uses']} use(s)"
        out.note(f"valid for {ttl}, {limit}, agents dial {reply['address']}")

    output(json).show(reply, render)


@app.command("list")
def list_tokens(json: bool = JSON_OPTION) -> None:
    """Tokens with their expiry and uses (the secrets are never shown again)."""
    output(json).show(request("token.list")["tokens"], _render_list)


def _render_list(out: Output, tokens: list[dict[str, Any]]) -> None:
    now = time.time()
    rows = []
    for t in tokens:
        left = t["expires_at"] - now
        rows.append(
            [
                t["id"],
                human_duration(left) if left > 0 else "[red]expired[/]",
                "unlimited" if t["uses_left"] is None else str(t["uses_left"]),
                str(t["used"]),
            ]
        )
    out.table(COLUMNS, rows)
