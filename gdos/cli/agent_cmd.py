"""``gdos agent run``: parse here, then exec the lean agent process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

app = typer.Typer(help="Run the node agent.", no_args_is_help=True)


@app.command()
def run(
    join: str | None = typer.Option(
        None,
        "--join",
        help="Join token, or - to read it from standard input (a token written here is "
        "visible to local users until the agent starts; prefer --join-file or GDOS_JOIN_TOKEN).",
    ),
    join_file: Path | None = typer.Option(
        None, "--join-file", help="File holding the join token from 'gdos token create'."
    ),
    daemon: str | None = typer.Option(None, "--daemon", help="Daemon mesh address HOST:PORT."),
    daemon_key: str | None = typer.Option(None, "--daemon-key", help="Daemon public key (z85)."),
    name: str | None = typer.Option(
        None, "--name", help="Node name (default: the enrolled name, else the hostname)."
    ),
    state_dir: Path | None = typer.Option(None, "--state-dir", help="Agent state folder."),
    insecure: bool = typer.Option(False, "--insecure", help="Plaintext mesh (daemon too)."),
    trust_network: bool = typer.Option(
        False, "--i-trust-this-network", help="Allow --insecure on a non-loopback address."
    ),
    backoff_max: float = typer.Option(30.0, "--backoff-max", help="Reconnect backoff cap, s."),
    log_level: str = typer.Option("INFO", "--log-level", help="DEBUG, INFO, WARNING, ERROR."),
    service_log_mb: int = typer.Option(
        10, "--service-log-mb", min=1, help="Rotate each service's stdout/stderr at this size, MiB."
    ),
    service_log_keep: int = typer.Option(
        5, "--service-log-keep", min=1, help="Rotated service log files kept."
    ),
    log_root: list[Path] = typer.Option(
        None, "--log-root", help="Folder 'gdos logs --path' may read (repeat; default /var/log)."
    ),
) -> None:
    """Run the agent in the foreground; it dials the daemon and keeps redialling.

    The agent runs as its own lean process (no CLI libraries loaded), so this
    command replaces itself with ``python -P -m gdos.agent``. The join token (from
    --join, --join-file, --join - or GDOS_JOIN_TOKEN) is handed over through an
    inherited pipe, never that process's command line or environment.
    """
    from gdos.cli.output import fail, output
    from gdos.errors import GdosError
    from gdos.identity import join_input

    try:
        token = join_input.take(join, join_file, None)
    except GdosError as error:
        fail(error)
    if join not in (None, "-"):
        output().note(join_input.ARGV_WARNING)
    argv = [
        sys.executable,
        "-P",  # never import from the working directory (the agent often runs as root)
        "-m",
        "gdos.agent",
        "--backoff-max",
        str(backoff_max),
        "--log-level",
        log_level,
        "--service-log-mb",
        str(service_log_mb),
        "--service-log-keep",
        str(service_log_keep),
    ]
    for flag, value in (
        ("--daemon", daemon),
        ("--daemon-key", daemon_key),
        ("--name", name),
        ("--state-dir", state_dir),
    ):
        if value is not None:  # FLAG=VALUE: a z85 key may begin with '-'
            argv.append(f"{flag}={value}")
    if token is not None:
        argv += ["--join-fd", str(join_input.hand_over(token))]
    if insecure:
        argv.append("--insecure")
    if trust_network:
        argv.append("--i-trust-this-network")
    for root in log_root or []:
        argv.append(f"--log-root={root}")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)
