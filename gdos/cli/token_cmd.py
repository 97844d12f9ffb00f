"""``gdos token create | list``: join tokens for new agents."""

from __future__ import annotations

import sys
import time

import typer

from gdos.cli.common import (
    JSON_OPTION,
    human_duration,
    parse_duration,
    print_json,
    request,
)

app = typer.Typer(help="Create join tokens so new agents enroll themselves.", no_args_is_help=True)


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
    if json:
        print_json(reply)
        return
    sys.stdout.write(reply["token"] + "\n")
    limit = "unlimited uses" if reply["uses"] is None else f"{reply['uses']} use(s)"
    sys.stderr.write(f"valid for {ttl}, {limit}, agents dial {reply['address']}\n")


@app.command("list")
def list_tokens(json: bool = JSON_OPTION) -> None:
    """Tokens with their expiry and uses (the secrets are never shown again)."""
    tokens = request("token.list")["tokens"]
    if json:
        print_json(tokens)
        return
    from gdos.cli.tables import Column, print_table

    columns = [Column("ID"), Column("EXPIRES IN"), Column("USES LEFT"), Column("USED", drop=1)]
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
    print_table(columns, rows)
