"""``python -P -m gdos.agent``: the lean agent process that ``gdos agent run`` execs.

The agent keeps its own state folder (keypair, and the daemon and name it
enrolled with: agent/enrollment.py, so a restart needs no arguments). The
join token never stays in this process's command line (gdos/identity/join_input.py).
Options are parsed here with argparse so the agent never imports typer or rich.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from gdos.agent import enrollment

from gdos import __version__, paths
from gdos.errors import GdosError
from gdos.identity import insecure, join_input, keys, tokens


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gdos agent run", description="Run the gdos node agent.")
    p.add_argument("--join", help="join token, or - to read it from standard input")
    p.add_argument("--join-file", type=Path, help="file holding the join token")
    p.add_argument("--join-fd", type=int, help=argparse.SUPPRESS)  # from 'gdos agent run'
    p.add_argument("--daemon", help="daemon mesh address, HOST:PORT or tcp://HOST:PORT")
    p.add_argument("--daemon-key", help="daemon public key (z85), from 'gdos daemon status'")
    p.add_argument("--name", help="node name (default: the enrolled name, else the hostname)")
    p.add_argument("--state-dir", type=Path, help="agent state folder")
    p.add_argument("--insecure", action="store_true", help="plaintext mesh (daemon too)")
    p.add_argument(
        insecure.TRUST_FLAG,
        action="store_true",
        dest="trust_network",
        help="allow --insecure on a non-loopback address",
    )
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


async def serve(args: argparse.Namespace, token_text: str | None) -> None:
    from gdos.agent.facts import collect_facts
    from gdos.agent.link import Link, LinkConfig

    state_dir = args.state_dir or paths.resolve().agent_dir
    paths.ensure_private_dir(state_dir)
    token = tokens.decode(token_text) if token_text else None
    saved = enrollment.load(state_dir)
    address, server_key = enrollment.resolve(
        token, args.daemon, args.daemon_key, args.insecure, saved
    )
    if args.insecure:
        insecure.check(address, args.trust_network)
    keypair = None if args.insecure else keys.load_or_create(state_dir, "agent")
    agent_key = None if keypair is None else keys.fingerprint(keypair.public)
    name, welcomed = enrollment.choose_name(args.name, saved, address, server_key, agent_key)
    record = enrollment.Enrollment(address, server_key, name, agent_key, welcomed)
    record.save(state_dir)
    if args.insecure:
        logging.warning(insecure.exposure(address))

    def on_welcome() -> None:
        if not record.welcomed:
            record.welcomed = True
            record.save(state_dir)

    config = LinkConfig(
        name=name,
        address=address,
        server_key=server_key,
        keypair=keypair,
        state_dir=state_dir,
        token=token,
        on_welcome=on_welcome,
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


def scrub_token(argv: list[str], token: str) -> None:
    """Run again with the token in an inherited pipe instead of argv or environment."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--join":
            skip = True
        elif not arg.startswith("--join="):
            kept.append(arg)
    fd = join_input.hand_over(token)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(
        sys.executable, [sys.executable, "-P", "-m", "gdos.agent", *kept, "--join-fd", str(fd)]
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        visible = args.join not in (None, "-") or join_input.ENV in os.environ
        token_text = join_input.take(args.join, args.join_file, args.join_fd)
        if visible and token_text and argv is None:  # the real process: scrub, then serve
            if args.join not in (None, "-"):
                print(join_input.ARGV_WARNING, file=sys.stderr)
            scrub_token(sys.argv[1:], token_text)
        asyncio.run(serve(args, token_text))
    except GdosError as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    return 0
