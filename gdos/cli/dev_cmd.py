"""``gdos dev ...``: tools for developing and measuring gdos itself."""

from __future__ import annotations

from pathlib import Path

import typer

from gdos.cli.output import fail
from gdos.errors import GdosError

app = typer.Typer(help="Developer tools: the mock cluster for scale tests.", no_args_is_help=True)


@app.command("mock-cluster")
def mock_cluster(
    agents: int = typer.Option(100, "--agents", "-n", min=1, help="Simulated agents to run."),
    procs: int = typer.Option(
        0, "--procs", min=0, help="Worker processes (0: one per ~4,000 agents)."
    ),
    join: str | None = typer.Option(
        None, "--join", help="Join token, or - for standard input (or GDOS_JOIN_TOKEN)."
    ),
    join_file: Path | None = typer.Option(None, "--join-file", help="File holding the token."),
    daemon: str | None = typer.Option(None, "--daemon", help="Daemon mesh address HOST:PORT."),
    daemon_key: str | None = typer.Option(None, "--daemon-key", help="Daemon public key (z85)."),
    insecure: bool = typer.Option(False, "--insecure", help="Plaintext mesh (daemon too)."),
    prefix: str = typer.Option("sim", "--prefix", help="Node names are PREFIX-00000, ..."),
    start_index: int = typer.Option(0, "--start-index", min=0, help="Number of the first node."),
    keys_dir: Path | None = typer.Option(
        None, "--keys-dir", help="Keep the agents' keypairs here, to reuse them next run."
    ),
    rate: float = typer.Option(
        0.0, "--rate", min=0.0, help="Connections per second (0: as fast as possible)."
    ),
    backoff_max: float = typer.Option(5.0, "--backoff-max", help="Reconnect backoff cap, s."),
    hello_timeout: float = typer.Option(
        5.0, "--hello-timeout", help="Redial when no welcome comes within this, s (agent: 5)."
    ),
    log_level: str = typer.Option("WARNING", "--log-level", help="DEBUG, INFO, WARNING, ERROR."),
) -> None:
    """Run N simulated agents against a daemon until Ctrl-C.

    Each is a real mesh connection with its own CURVE key that enrolls,
    heartbeats, reports fake metrics and simulates exec (true, false, echo,
    sleep) without spawning processes.
    """
    from gdos.devtools import mock_cluster as mc
    from gdos.identity import join_input

    try:
        config = mc.make_config(
            agents,
            join=join_input.take(join, join_file, None),
            daemon=daemon,
            daemon_key=daemon_key,
            insecure=insecure,
            prefix=prefix,
            start_index=start_index,
            keys_dir=keys_dir,
            rate=rate,
            backoff_max=backoff_max,
            hello_timeout=hello_timeout,
        )
        code = mc.run(config, procs, log_level)
    except GdosError as error:
        fail(error)
    raise typer.Exit(code)
