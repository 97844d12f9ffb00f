"""``gdos daemon run | start | stop | status``."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer

from gdos.cli.common import JSON_OPTION
from gdos.cli.output import Output, fail, output
from gdos.errors import ErrorCode, GdosError

app = typer.Typer(help="Run, start, stop and inspect the control daemon.", no_args_is_help=True)

MESH = typer.Option("tcp://0.0.0.0:7420", "--mesh", help="Address the mesh ROUTER binds.")
ADVERTISE = typer.Option(None, "--advertise", help="Mesh address written into join tokens.")
HEARTBEAT = typer.Option(15.0, "--heartbeat", help="Agent heartbeat interval, seconds.")
METRICS = typer.Option(5.0, "--metrics-interval", help="Agent metrics interval, seconds.")
OFFLINE = typer.Option(45.0, "--offline-after", help="Seconds of silence before offline.")
INSECURE = typer.Option(False, "--insecure", help="Plaintext mesh (agents need it too).")
TRUST_NETWORK = typer.Option(
    False, "--i-trust-this-network", help="Allow --insecure on a non-loopback mesh address."
)
MAX_PENDING = typer.Option(
    1000, "--max-pending-keys", help="Pending keys kept; the oldest expires beyond this."
)
PENDING_RATE = typer.Option(
    20.0, "--pending-keys-per-minute", help="New pending keys accepted per source address."
)
LOG_LEVEL = typer.Option("INFO", "--log-level", help="DEBUG, INFO, WARNING or ERROR.")
RECORD_INPUT = typer.Option(
    False, "--record-input", help="Also record what operators type in shell sessions."
)
STORE = typer.Option("local", "--package-store", help="Where package bytes live: local or s3.")
S3_ENDPOINT = typer.Option(None, "--s3-endpoint", help="S3 endpoint, http(s)://HOST:PORT.")
S3_BUCKET = typer.Option(None, "--s3-bucket", help="S3 bucket for packages.")
S3_PREFIX = typer.Option("packages/", "--s3-prefix", help="Key prefix inside the bucket.")
S3_REGION = typer.Option(None, "--s3-region", help="S3 region, when the server needs one.")
S3_CREATE = typer.Option(False, "--s3-create-bucket", help="Create the bucket if missing.")
MAX_PACKAGE = typer.Option(2048, "--max-package-mb", help="Largest package accepted, MiB.")
PROMETHEUS = typer.Option(
    None, "--prometheus", help="Serve Prometheus metrics on HOST:PORT (/metrics); off by default."
)


ALERT_COMMAND = typer.Option(
    None, "--alert-command", help="Command run on every alert event (GDOS_ALERT_* in its env)."
)
ALERT_WEBHOOK = typer.Option(None, "--alert-webhook", help="URL POSTed every alert event (JSON).")
BACKUP_EVERY = typer.Option(
    None, "--backup-every", help="Back up the state database this often (e.g. 6h); off by default."
)
BACKUP_KEEP = typer.Option(10, "--backup-keep", help="Scheduled backups kept (newest).")
LOG_FILE = typer.Option(
    None, "--log-file", help="Write the log to this file, rotated (start uses the log dir)."
)
LOG_MAX_MB = typer.Option(50, "--log-max-mb", help="Rotate the log file at this size, MiB.")
LOG_KEEP = typer.Option(5, "--log-keep", help="Rotated log files kept.")
MAX_HANDSHAKES = typer.Option(
    32, "--max-handshakes", help="Mesh connections allowed in their handshake at once."
)
PEER_QUOTA = typer.Option(64.0, "--peer-quota-mb", help="MiB/s one node may send; more is dropped.")
MAX_CONNECTIONS = typer.Option(
    0, "--max-connections", help="Mesh connections open at once; 0: from the fd limit."
)


def _observe(
    alert_command: str | None, alert_webhook: str | None, every: str | None, keep: int
) -> dict[str, object]:
    """Check the alert hook and backup schedule options before the daemon starts."""
    from gdos.cli.common import parse_duration
    from gdos.daemon.alert_rules import check_command, check_webhook

    try:
        check_command(alert_command)
        check_webhook(alert_webhook)
    except GdosError as error:
        fail(error)
    seconds = parse_duration(every, "--backup-every") if every else 0.0
    if (every and seconds < 1) or keep < 1:
        fail(
            GdosError(
                ErrorCode.INVALID_ARGUMENT, "--backup-every must be 1s or more, --backup-keep 1+."
            )
        )
    return {
        "alert_command": alert_command or None,
        "alert_webhook": alert_webhook or None,
        "backup_every": seconds,
        "backup_keep": keep,
    }


def _prometheus(address: str | None) -> str | None:
    """Check ``--prometheus HOST:PORT`` before the daemon starts."""
    if address is None:
        return None
    from gdos.daemon.prometheus import parse_address

    try:
        parse_address(address)
    except GdosError as error:
        fail(error)
    return address.strip()


def _insecure(mesh: str, trusted: bool) -> None:
    """Refuse --insecure beyond loopback unless trusted; say loudly what it exposes."""
    from gdos.identity import insecure

    try:
        insecure.check(mesh, trusted)
    except GdosError as error:
        fail(error)
    output().note(f"warning: {insecure.exposure(mesh)}")


def _daemon_config(options: dict[str, Any]) -> Any:
    """Every option of ``daemon run`` checked and turned into a DaemonConfig."""
    from gdos.daemon.config import DaemonConfig, check_mesh_address

    heartbeat, metrics, offline = (
        options["heartbeat"],
        options["metrics_interval"],
        options["offline_after"],
    )
    if min(heartbeat, metrics, offline) <= 0 or offline <= heartbeat:
        fail(
            GdosError(
                ErrorCode.INVALID_ARGUMENT,
                "intervals must be positive and --offline-after longer than --heartbeat.",
            )
        )
    try:
        mesh = check_mesh_address(options["mesh"])
    except GdosError as error:
        fail(error)
    if options["max_pending_keys"] < 1 or not options["pending_keys_per_minute"] > 0:
        fail(
            GdosError(
                ErrorCode.INVALID_ARGUMENT,
                "--max-pending-keys must be 1+ and --pending-keys-per-minute above 0.",
            )
        )
    if options["insecure"]:
        _insecure(options["mesh"], options["trust_network"])
    if options["max_package_mb"] < 1:
        fail(GdosError(ErrorCode.INVALID_ARGUMENT, "--max-package-mb must be at least 1."))
    if options["log_max_mb"] < 1 or options["log_keep"] < 1 or options["max_handshakes"] < 1:
        fail(
            GdosError(
                ErrorCode.INVALID_ARGUMENT,
                "--log-max-mb, --log-keep and --max-handshakes must be at least 1.",
            )
        )
    if not options["peer_quota_mb"] >= 1:
        fail(GdosError(ErrorCode.INVALID_ARGUMENT, "--peer-quota-mb must be at least 1."))
    if options["max_connections"] < 0:
        fail(GdosError(ErrorCode.INVALID_ARGUMENT, "--max-connections must be 0 or more."))
    store = {
        "backend": options["package_store"],
        **{k: options[k] for k in options if k.startswith("s3_")},
    }
    observe = _observe(
        options["alert_command"],
        options["alert_webhook"],
        options["backup_every"],
        options["backup_keep"],
    )
    return DaemonConfig(
        mesh_bind=mesh,
        advertise=options["advertise"],
        heartbeat_interval=heartbeat,
        metrics_interval=metrics,
        offline_after=offline,
        insecure=options["insecure"],
        trust_network=options["trust_network"],
        max_pending_keys=options["max_pending_keys"],
        pending_keys_per_minute=options["pending_keys_per_minute"],
        record_input=options["record_input"],
        package_store=store,
        max_package_bytes=options["max_package_mb"] * 1024 * 1024,
        prometheus=_prometheus(options["prometheus"]),
        max_handshakes=options["max_handshakes"],
        max_connections=options["max_connections"],
        peer_quota_mb=options["peer_quota_mb"],
        log_max_bytes=options["log_max_mb"] * 1024 * 1024,
        log_keep=options["log_keep"],
        **observe,  # type: ignore[arg-type]
    )


@app.command()
def run(
    mesh: str = MESH,
    advertise: str | None = ADVERTISE,
    heartbeat: float = HEARTBEAT,
    metrics_interval: float = METRICS,
    offline_after: float = OFFLINE,
    insecure: bool = INSECURE,
    trust_network: bool = TRUST_NETWORK,
    max_pending_keys: int = MAX_PENDING,
    pending_keys_per_minute: float = PENDING_RATE,
    log_level: str = LOG_LEVEL,
    record_input: bool = RECORD_INPUT,
    package_store: str = STORE,
    s3_endpoint: str | None = S3_ENDPOINT,
    s3_bucket: str | None = S3_BUCKET,
    s3_prefix: str = S3_PREFIX,
    s3_region: str | None = S3_REGION,
    s3_create_bucket: bool = S3_CREATE,
    max_package_mb: int = MAX_PACKAGE,
    prometheus: str | None = PROMETHEUS,
    alert_command: str | None = ALERT_COMMAND,
    alert_webhook: str | None = ALERT_WEBHOOK,
    backup_every: str | None = BACKUP_EVERY,
    backup_keep: int = BACKUP_KEEP,
    log_file: Path | None = LOG_FILE,
    log_max_mb: int = LOG_MAX_MB,
    log_keep: int = LOG_KEEP,
    max_handshakes: int = MAX_HANDSHAKES,
    max_connections: int = MAX_CONNECTIONS,
    peer_quota_mb: float = PEER_QUOTA,
) -> None:
    """Run the daemon in the foreground (logs to stderr).

    S3 credentials come from GDOS_S3_ACCESS_KEY and GDOS_S3_SECRET_KEY, never
    from the command line, where every local user could read them.
    """
    from gdos import paths
    from gdos.daemon.lifecycle import run_foreground

    config = _daemon_config(dict(locals()))
    try:
        run_foreground(config, paths.resolve(), log_level, log_file)
    except GdosError as error:
        fail(error)
    except OSError as error:
        fail(GdosError(ErrorCode.DAEMON_UNAVAILABLE, f"cannot start the daemon: {error}"))


def start(ctx: typer.Context, **options: Any) -> None:
    """Start the daemon in the background (same options as run); returns once it answers."""
    from gdos import paths
    from gdos.daemon.lifecycle import start_background

    _daemon_config(options)  # refuse bad options here, not in a log file
    where = paths.resolve()
    try:
        pid = start_background(_given_options(ctx), where)
    except GdosError as error:
        fail(error)
    output().line(f"gdosd started (pid {pid}); log: {where.daemon_log}")


# `start` takes exactly the options of `run`, declared once (plus Typer's context).
_RUN = inspect.signature(run, eval_str=True)
_CTX = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
start.__signature__ = _RUN.replace(  # type: ignore[attr-defined]
    parameters=[_CTX, *_RUN.parameters.values()]
)
app.command("start")(start)


def _given_options(ctx: Any) -> list[str]:
    """The parsed options that differ from their defaults, as command-line flags again."""
    args: list[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value == param.default or not param.opts:
            continue
        if getattr(param, "is_flag", False):
            args += [param.opts[0]] if value else []
        else:
            args += [param.opts[0], str(value)]
    return args


@app.command()
def stop() -> None:
    """Stop the daemon of this GDOS_HOME; returns once its process has exited."""
    from gdos import paths
    from gdos.daemon.lifecycle import stop_background

    try:
        stopped = stop_background(paths.resolve())
    except GdosError as error:
        fail(error)
    if stopped.killed:
        output().line(f"gdosd (pid {stopped.pid}) did not exit in time; killed with SIGKILL")
    else:
        output().line(f"gdosd stopped (pid {stopped.pid})")


@app.command()
def status(json: bool = JSON_OPTION) -> None:
    """Show whether the daemon runs, its mesh address, key and node counts."""
    from gdos.cli.common import request

    output(json).show(request("ping"), _render_status)


def _render_status(out: Output, info: dict[str, Any]) -> None:
    from gdos.cli.common import ago

    rows = [
        ("mesh:", f"{info['mesh']}{' (INSECURE)' if info['insecure'] else ''}"),
        ("public key:", info["public_key"] or "-"),
        ("nodes:", f"{info['online']} online of {info['nodes']}"),
    ]
    if info.get("storage_error"):
        rows.append(
            (
                "storage:",
                f"FAILING, {info.get('unsaved_rows', 0)} task rows waiting: "
                f"{info['storage_error']}",
            )
        )
    heading = f"gdosd {info['version']} running, pid {info['pid']}, up since {ago(info['started'])}"
    out.fields(rows, [heading])
