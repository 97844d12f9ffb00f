"""``python -m agent``: the lean agent process that ``gdos agent run`` execs.

The agent keeps its own state folder (keypair, and the daemon it joined, so
a restart needs no arguments). Options are parsed here with argparse so the
agent never imports typer or rich.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from gdos import __version__, keys, paths, tokens
from gdos.dialing import normalize_address
from gdos.errors import ErrorCode, GdosError
from gdos.names import check_name


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gdos agent run", description="Run the gdos node agent.")
    p.add_argument("--join", help="join token from 'gdos token create'")
    p.add_argument("--daemon", help="daemon mesh address, HOST:PORT or tcp://HOST:PORT")
    p.add_argument("--daemon-key", help="daemon public key (z85), from 'gdos daemon status'")
    p.add_argument("--name", help="node name (default: the hostname)")
    p.add_argument("--state-dir", type=Path, help="agent state folder")
    p.add_argument("--insecure", action="store_true", help="plaintext mesh (daemon too)")
    p.add_argument("--backoff-max", type=float, default=30.0, help="reconnect backoff cap, s")
    p.add_argument("--log-level", default="INFO")
    p.add_argument(
        "--service-log-mb", type=int, default=10, help="rotate a service's stdout/stderr at, MiB"
    )
    p.add_argument("--service-log-keep", type=int, default=5, help="rotated service logs kept")
    p.add_argument(
        "--log-root",
        action="append",
        type=Path,
        dest="log_roots",
        help="folder whose files 'gdos logs --path' may read (repeat; default /var/log)",
    )
    return p


def resolve_link(
    args: argparse.Namespace, state_dir: Path
) -> tuple[str, str | None, tokens.JoinToken | None]:
    """(address, daemon key, token) from the options, else from the last join."""
    saved_file = state_dir / "daemon.json"
    key: str | None
    token = tokens.decode(args.join) if args.join else None
    if token is not None:
        if token.expired():
            raise GdosError(
                ErrorCode.TOKEN_EXPIRED,
                "the join token has expired; make a new one with 'gdos token create'.",
            )
        address, key = token.address, token.server_key
    elif args.daemon:
        address, key = normalize_address(args.daemon), args.daemon_key
    elif saved_file.exists():
        saved = json.loads(saved_file.read_text())
        address, key = saved["address"], saved.get("key")
    else:
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            "give --join TOKEN, or --daemon HOST:PORT with --daemon-key KEY.",
        )
    if args.insecure:
        key = None
    elif not key or not keys.is_z85_key(key):
        raise GdosError(
            ErrorCode.INVALID_ARGUMENT,
            "--daemon-key must be the daemon's 40-character public key "
            "(see 'gdos daemon status'), or pass --insecure on both sides.",
        )
    saved_file.write_text(json.dumps({"address": address, "key": key}))
    return address, key, token


async def serve(args: argparse.Namespace) -> None:
    from agent.facts import collect_facts
    from agent.link import Link, LinkConfig

    state_dir = args.state_dir or paths.resolve().agent_dir
    paths.ensure_private_dir(state_dir)
    name = check_name(args.name or socket.gethostname().split(".")[0])
    address, server_key, token = resolve_link(args, state_dir)
    keypair = None if args.insecure else keys.load_or_create(state_dir, "agent")
    if args.insecure:
        logging.warning("running with --insecure: the mesh is plaintext")
    config = LinkConfig(
        name=name,
        address=address,
        server_key=server_key,
        keypair=keypair,
        state_dir=state_dir,
        token=token,
        service_log_bytes=max(1, args.service_log_mb) * 1024 * 1024,
        service_log_keep=max(1, args.service_log_keep),
        backoff_max=max(0.1, args.backoff_max),
        log_roots=tuple(root.absolute() for root in args.log_roots or [Path("/var/log")]),
    )
    link = Link(config, collect_facts(__version__))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, link.stop)
    logging.info("agent %s (pid %d) dialling %s", name, os.getpid(), address)
    await link.run()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(serve(args))
    except GdosError as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    return 0
