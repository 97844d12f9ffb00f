"""Remote shell benchmark, run by hand: ``python bench/shell.py``.

Compares ``gdos shell`` with ssh on loopback, in one run:

  echo        keystroke-to-echo round trip: one byte written to the local pty
              of ``gdos shell NODE -- cat`` (and of ``ssh -tt HOST cat``), timed
              until the remote pty's echo of it comes back; p50 and p99
  throughput  ``cat`` of a 100 MB file through each, output to /dev/null

The ssh side is a private sshd this script starts on a free loopback port
with its own config, host key, user key and authorized_keys in a temporary
folder (UsePAM no); the gdos side is a fresh daemon and one real agent in
temporary GDOS_HOMEs. Both run as the current user (root: sshd needs it).
Prints figures and ratios; asserts nothing. Everything started here is
killed on the way out, also on Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import shutil
import statistics
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import (  # the folder is put on the path just above
    Daemon,
    Owned,
    exit_on_signals,
    free_port,
    gdos_argv,
    log,
    wait_for,
)

SSHD = "/usr/sbin/sshd"
NODE = "bench-shell"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=500, help="echo round trips per tool")
    parser.add_argument("--size-mb", type=int, default=100, help="size of the file to cat")
    parser.add_argument("--runs", type=int, default=3, help="throughput runs per tool (best)")
    args = parser.parse_args()
    for tool in (SSHD, "ssh", "ssh-keygen"):
        if not shutil.which(tool):
            log(f"{tool} not found: apt-get install -y openssh-server openssh-client")
            return 2
    exit_on_signals()
    owned = Owned()
    try:
        ssh = start_sshd(owned)
        gdos, recordings = start_gdos(owned)
        payload = owned.home("gbf-") / "payload"
        with open(payload, "wb") as f:
            for _ in range(args.size_mb):
                f.write(os.urandom(1 << 20))
        tools = {"gdos shell": gdos, "ssh": ssh}
        echo = {}
        for name, argv in tools.items():
            log(f"echo round trips through {name}")
            echo[name] = echo_round_trips(argv("cat", True), args.samples)
        rate, converted = {}, 0.0
        for name, argv in tools.items():
            log(f"cat of {args.size_mb} MiB through {name}")
            seconds = best_time(argv(f"cat {payload}", False), args.runs, recordings)
            rate[name] = args.size_mb * (1 << 20) / seconds / 1e6
            if name == "gdos shell":  # its last run's recording; ssh's runs wait for it
                converted = conversion_time(recordings)
        report(echo, rate, converted, args)
    finally:
        owned.close()
    return 0


def start_sshd(owned: Owned) -> Callable[[str, bool], list[str]]:
    """A private sshd on loopback; returns argv for ``ssh [-tt] ... COMMAND``."""
    home = owned.home("gbs-")
    for key in ("host", "user"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / key)], check=True
        )
    shutil.copy(home / "user.pub", home / "authorized_keys")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    port = free_port()
    config = home / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nHostKey {home / 'host'}\nPidFile {home / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {home / 'authorized_keys'}\nUsePAM no\nStrictModes no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\nPrintMotd no\nPrintLastLog no\nUseDNS no\n"
        "LogLevel ERROR\n"
    )
    proc = owned.spawn("sshd", [SSHD, "-D", "-e", "-f", str(config), "-p", str(port)], home)
    base = [
        "ssh",
        "-i",
        str(home / "user"),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "LogLevel=ERROR",
        "-p",
        str(port),
        f"{os.environ.get('USER', 'root')}@127.0.0.1",
    ]
    probe = [*base, "true"]
    wait_for(
        lambda: proc.alive() and subprocess.run(probe, capture_output=True).returncode == 0,
        20,
        "sshd to accept the key",
    )
    version = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    log(f"sshd on 127.0.0.1:{port} ({version})")

    def ssh(command: str, tty: bool) -> list[str]:
        return [base[0], *(["-tt"] if tty else []), *base[1:], command]

    return ssh


def start_gdos(owned: Owned) -> tuple[Callable[[str, bool], list[str]], Path]:
    """A daemon and one real agent: argv for ``gdos shell NODE -- COMMAND``, and the
    daemon's recordings folder."""
    daemon = Daemon.start(owned)
    owned.spawn(
        "agent",
        [*gdos_argv(), "agent", "run", "--join", daemon.token(), "--name", NODE],
        owned.home("gba-"),
    )
    wait_for(lambda: daemon.online() >= 1, 30, "the agent to come online")
    log(f"gdos daemon and agent {NODE} online")

    def gdos(command: str, tty: bool) -> list[str]:
        # a pty when stdin is one, as for ssh -tt; pipes otherwise
        env_home = ["env", f"GDOS_HOME={daemon.home}"]
        return [*env_home, *gdos_argv(), "shell", NODE, "--", *command.split()]

    return gdos, daemon.home / "state" / "sessions"


def echo_round_trips(argv: list[str], samples: int) -> list[float]:
    """Seconds from writing one byte to the local pty until its remote echo returns."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True, close_fds=True
    )
    os.close(slave)
    try:
        # The local pty echoes by itself until the client makes it raw: wait for
        # that, then for the remote end to echo, then for silence.
        wait_for(lambda: not termios.tcgetattr(master)[3] & termios.ECHO, 30, "raw mode")
        if not _round_trip(master, 30.0):
            raise RuntimeError(f"{argv[0]}: no echo within 30 s")
        _drain(master, 0.5)
        times = []
        for i in range(samples):
            if i and i % 200 == 0:
                os.write(master, b"\r")  # keep the remote line short (canonical mode)
                _drain(master, 0.2)
            began = time.perf_counter()
            if not _round_trip(master, 5.0):
                raise RuntimeError(f"{argv[0]}: echo lost")
            times.append(time.perf_counter() - began)
        return times
    finally:
        proc.kill()
        proc.wait(10)
        os.close(master)


def _round_trip(master: int, timeout: float) -> bool:
    os.write(master, b"x")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], deadline - time.monotonic())
        if ready and b"x" in os.read(master, 4096):
            return True
    return False


def _drain(master: int, quiet: float) -> None:
    while select.select([master], [], [], quiet)[0]:
        os.read(master, 65536)


def journals(recordings: Path) -> list[Path]:
    return list(recordings.glob("*.rec")) if recordings.exists() else []


def best_time(argv: list[str], runs: int, recordings: Path) -> float:
    """Best wall time of ``argv``; each run starts once the daemon has converted
    earlier recordings (a background process that would compete for the CPU)."""
    times = []
    for _ in range(runs):
        wait_for(lambda: not journals(recordings), 300, "recordings converted", every=0.05)
        began = time.perf_counter()
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - began)
    return min(times)


def conversion_time(recordings: Path) -> float:
    """How long the daemon's background conversion of the last session took to finish."""
    began = time.perf_counter()
    wait_for(lambda: not journals(recordings), 600, "recordings converted", every=0.05)
    return time.perf_counter() - began


def report(
    echo: dict[str, list[float]],
    rate: dict[str, float],
    converted: float,
    args: argparse.Namespace,
) -> None:
    def pct(values: list[float], p: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    print(f"keystroke-to-echo round trip ({args.samples} samples), ms")
    for name, values in echo.items():
        print(
            f"  {name:<11} p50 {pct(values, 0.50):7.3f}  p99 {pct(values, 0.99):7.3f}  "
            f"mean {statistics.mean(values) * 1000:7.3f}"
        )
    g, s = echo["gdos shell"], echo["ssh"]
    print(
        f"  ratio gdos/ssh: p50 {pct(g, 0.5) / pct(s, 0.5):.2f}x, "
        f"p99 {pct(g, 0.99) / pct(s, 0.99):.2f}x   (target <= 1.00x)"
    )
    print(f"cat of a {args.size_mb} MiB file to /dev/null (best of {args.runs}), MB/s")
    for name, value in rate.items():
        print(f"  {name:<11} {value:8.1f}")
    print(f"  ratio gdos/ssh: {rate['gdos shell'] / rate['ssh']:.2f}x   (target >= 0.50x)")
    print(
        f"recording: the last {args.size_mb} MiB session became asciicast {converted:.1f} s "
        "after it ended (background process, nice 10; not in the figures above)"
    )


if __name__ == "__main__":
    sys.exit(main())
