"""gdos benchmarks, run by hand: ``python bench/run.py`` (or ``make bench``).

Prints figures, and ratios against baselines measured in the same run, then
a table of each figure beside its target. It never asserts a timing: a
figure over its target is a finding to look into, not a failure.

Sections (``--only`` picks some, comma-separated):

  exec20    wall time of ``gdos exec --all -- true`` over 20 real agents
  exec1000  the same over 1,000 simulated agents (mock cluster), fresh daemon
  rss       daemon RSS with 1,000 and with --agents-large simulated agents
            online and heartbeating, and the time to get them online
  agent     real agent RSS and idle CPU % over 10 s
  help      ``gdos --help`` wall time beside ``python -c pass``
  converge20    instance states after a daemon kill -9 and restart, over the
            20 real agents each running a small service: time until status
            matches the real processes, beside the time until they are all
            back online (bench/recovery.py)
  restart1000   time until 1,000 simulated agents are back online after a
            clean daemon restart and after a kill -9, beside the cold time
            for the same agents to come online the first time

Every daemon runs with the default intervals (heartbeat 15 s, metrics 5 s,
offline after 45 s) in its own temporary GDOS_HOME on a free loopback port.
The RSS figures are taken --settle seconds after all agents are online; they
are a lower bound, since libzmq's per-connection queues (16 KB chunks) become
resident only as messages pass through them, over tens of minutes at these
intervals. "hellos the daemon processed" above the agent count means agents
gave up waiting for their welcome (5 s) and redialled.
Every process started here is killed, with its process group, on the way
out, also on Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import recovery  # the folder is put on the path just above
from support import (
    Daemon,
    Owned,
    Proc,
    RssWatch,
    gdos_argv,
    kill_recorded,
    log,
    median_time,
    rss_mb,
    run_owned,
    timed,
    wait_for,
)

SECTIONS = ("exec20", "exec1000", "rss", "agent", "help", "converge20", "restart1000")
ONLINE_LINE = re.compile(r"^(\d+) simulated agents online in ([\d.]+)s", re.M)


@dataclass
class Row:
    figure: str
    value: float | None
    unit: str
    target: float | None = None
    note: str = ""

    def shown(self) -> str:
        if self.value is None:
            return "n/a"
        digits = 3 if self.unit == "s" and self.value < 10 else 2 if self.unit == "%" else 1
        return f"{self.value:.{digits}f} {self.unit}"

    def verdict(self) -> str:
        if self.target is None or self.value is None:
            return ""
        margin = f"{100 * (self.value - self.target) / self.target:+.0f}%"
        return f"meets ({margin})" if self.value <= self.target else f"MISSES ({margin})"


class Bench:
    def __init__(self, args: argparse.Namespace, owned: Owned) -> None:
        self.args, self.owned = args, owned
        self.rows: list[Row] = []
        self.baseline: dict[str, float] = {}
        self.fleet: tuple[Daemon, list[Proc]] | None = None

    # -- output -------------------------------------------------------------
    def section(self, title: str) -> None:
        print(f"\n== {title} ==", flush=True)

    def line(self, label: str, text: str) -> None:
        print(f"{label:<44} {text}", flush=True)

    def figure(
        self,
        label: str,
        value: float | None,
        unit: str,
        target: float | None = None,
        note: str = "",
    ) -> Row:
        row = Row(label, value, unit, target, note)
        self.rows.append(row)
        extra = f"  ({note})" if note else ""
        self.line(label, row.shown() + extra)
        return row

    # -- baselines ------------------------------------------------------------
    def start_cost(self) -> dict[str, float]:
        """Median wall time of python -c pass and gdos --version (CLI start cost)."""
        if not self.baseline:
            self.section("baseline: process start (median of 7 after 2 warm-ups)")
            py, _ = median_time([sys.executable, "-c", "pass"], runs=7)
            version, _ = median_time([*gdos_argv(), "--version"], runs=7)
            self.figure("python -c pass", py, "s")
            self.figure("gdos --version", version, "s")
            self.baseline = {"python": py, "version": version}
        return self.baseline

    def exec_figure(self, label: str, daemon: Daemon, target: float) -> None:
        base = self.start_cost()
        argv = daemon.gdos("exec", "--all", "--", "true")
        med, runs = median_time(argv, daemon.env, runs=self.args.runs, warmups=2)
        shown = ", ".join(f"{t:.3f}" for t in runs)
        self.figure(label, med, "s", target, f"median of {self.args.runs}: {shown}")
        self.line(
            "  vs gdos --version",
            f"{med / base['version']:.1f}x; the mesh adds {med - base['version']:.3f} s",
        )
        self.line("  vs python -c pass", f"{med / base['python']:.1f}x")

    # -- real agents ------------------------------------------------------------
    def real_fleet(self) -> tuple[Daemon, list[Proc]]:
        if self.fleet is None:
            count = self.args.real_agents
            log(f"starting a daemon and {count} real agents")
            daemon = Daemon.start(self.owned)
            token = daemon.token(uses=count)
            agents = []
            for i in range(count):
                home = self.owned.home(f"ga{i:02d}-")
                argv = [
                    *gdos_argv(),
                    "agent",
                    "run",
                    "--join",
                    token,
                    "--name",
                    f"bench-{i:02d}",
                    "--backoff-max",
                    "0.5",
                ]
                agents.append(self.owned.spawn(f"agent-{i:02d}", argv, home))
            wait_for(lambda: daemon.online() >= count, 60, f"{count} agents online")
            log(f"{count} real agents online")
            self.fleet = (daemon, agents)
        return self.fleet

    def exec20(self) -> None:
        daemon, agents = self.real_fleet()
        self.section(f"a. gdos exec --all -- true over {len(agents)} real agents")
        self.exec_figure(f"exec --all -- true, {len(agents)} real agents", daemon, 0.25)

    def agent(self) -> None:
        _, agents = self.real_fleet()
        self.section(f"d. real agent process ({len(agents)} agents, default intervals)")
        time.sleep(3)  # let start-up work (imports, facts) settle
        import psutil

        procs = [psutil.Process(a.pid) for a in agents]
        cmd = " ".join(procs[0].cmdline()[1:3])
        before = [p.cpu_times() for p in procs]
        began = time.monotonic()
        time.sleep(self.args.cpu_window)
        elapsed = time.monotonic() - began
        after = [p.cpu_times() for p in procs]
        cpu = [
            100 * ((a.user + a.system) - (b.user + b.system)) / elapsed
            for a, b in zip(after, before, strict=True)
        ]
        rss = [rss_mb(a.pid) for a in agents]
        note = f"max {max(rss):.1f} MB over {len(rss)} agents; process '{cmd}'"
        self.figure("agent RSS (median)", statistics.median(rss), "MB", 35.0, note)
        self.figure(
            f"agent idle CPU over {elapsed:.0f}s (median)",
            statistics.median(cpu),
            "%",
            None,
            f"max {max(cpu):.2f} %",
        )

    # -- simulated agents ---------------------------------------------------------
    def start_mock(self, daemon: Daemon, count: int) -> tuple[Proc, float]:
        token = daemon.token()
        argv = [*gdos_argv(), "dev", "mock-cluster", "--agents", str(count), "--join", token]
        began = time.monotonic()
        proc = self.owned.spawn(f"mock-{count}", argv, daemon.home)
        return proc, began

    def wait_mock(
        self, daemon: Daemon, proc: Proc, began: float, count: int
    ) -> tuple[float | None, str]:
        """Seconds from launch to all online (None if not reached) and a note."""
        deadline = began + self.args.online_timeout
        while time.monotonic() < deadline:
            match = ONLINE_LINE.search(proc.log_text())
            if match:
                elapsed = time.monotonic() - began
                wait_for(lambda: daemon.online() >= count, 60, f"daemon to count {count} online")
                return elapsed, f"mock cluster's own clock: {float(match.group(2)):.2f}s"
            if not proc.alive():
                return None, f"mock cluster exited: {proc.log_text()[-400:]}"
            time.sleep(0.2)
        online = daemon.online()
        notes = [ln for ln in proc.log_text().splitlines() if "WARNING" in ln or "..." in ln]
        return None, f"only {online} of {count} online after {self.args.online_timeout:g}s; " + (
            " | ".join(notes[-3:])
        )

    def mock_phase(self, count: int, measure_rss: bool, exec_target: float | None) -> None:
        log(f"fresh daemon, {count} simulated agents")
        daemon = Daemon.start(self.owned)
        watch = RssWatch(daemon.proc.pid)
        idle = rss_mb(daemon.proc.pid)
        mock, began = self.start_mock(daemon, count)
        try:
            elapsed, note = self.wait_mock(daemon, mock, began, count)
            self.figure(f"time to {count} simulated agents online", elapsed, "s", None, note)
            hellos = daemon.proc.log_text().count(" online from ")
            self.line("  hellos the daemon processed", f"{hellos} for {count} agents")
            if elapsed is None:
                return
            if measure_rss:
                log(f"online; waiting {self.args.settle:g}s of heartbeats before measuring RSS")
                time.sleep(self.args.settle)
                online = daemon.online()
                target = 300.0 if count >= 10_000 else None
                self.figure(
                    f"daemon RSS, {count} agents",
                    rss_mb(daemon.proc.pid),
                    "MB",
                    target,
                    f"idle daemon {idle:.0f} MB, peak so far {watch.peak:.0f} MB, "
                    f"{online} online after {self.args.settle:g}s",
                )
                mock_rss = sum(rss_mb(pid) for pid in _group(mock.pid))
                self.line("  mock cluster RSS (all its processes)", f"{mock_rss:.0f} MB")
            if exec_target is not None:
                self.exec_figure(f"exec --all -- true, {count} simulated", daemon, exec_target)
            elif count >= 10_000 and self.args.exec_large:
                self.exec_once(daemon, count)
        finally:
            peak = watch.close()
            self.line(f"  daemon peak RSS during the {count} phase", f"{peak:.0f} MB")
            self.owned.stop(mock)
            daemon.stop()

    def exec_once(self, daemon: Daemon, count: int) -> None:
        argv = daemon.gdos("exec", "--all", "--", "true")
        try:
            seconds = timed(argv, daemon.env, timeout=600)
            self.figure(f"exec --all -- true, {count} simulated (1 run)", seconds, "s")
        except (AssertionError, RuntimeError, subprocess.TimeoutExpired) as exc:
            self.figure(f"exec --all -- true, {count} simulated", None, "s", None, str(exc)[:300])

    def exec1000(self) -> None:
        count = self.args.agents_mock
        self.section(f"b. gdos exec --all -- true over {count} simulated agents")
        self.mock_phase(count, measure_rss="rss" in self.only, exec_target=1.0)

    def rss(self) -> None:
        if "exec1000" not in self.only:
            self.section(f"c. daemon RSS with {self.args.agents_mock} simulated agents")
            self.mock_phase(self.args.agents_mock, measure_rss=True, exec_target=None)
        large = self.args.agents_large
        self.section(f"c. daemon RSS with {large} simulated agents")
        self.mock_phase(large, measure_rss=True, exec_target=None)

    def help(self) -> None:
        self.section("e. CLI start (median of 10 after 2 warm-ups)")
        py, _ = median_time([sys.executable, "-c", "pass"], runs=10)
        med, _ = median_time([*gdos_argv(), "--help"], runs=10)
        self.figure("python -c pass (x10)", py, "s")
        self.figure("gdos --help", med, "s", 0.15, f"{med / py:.1f}x python -c pass")

    # -- recovery after a daemon restart --------------------------------------------
    def converge20(self) -> None:
        daemon, agents = self.real_fleet()
        count, homes = len(agents), recovery.instance_homes(agents)
        self.section(f"f. instance states after a daemon kill -9, {count} real agents")
        try:
            log(f"deploying and starting {recovery.SYSTEM}/{recovery.MODULE} on {count} agents")
            recovery.deploy_idle_service(daemon, self.owned.home("gbw-"), count)
            log("kill -9 of the daemon, then of services, restarted by their agents")
            result = recovery.converge_after_kill(
                daemon, homes, self.args.churn, self.args.converge_timeout, self.args.hold
            )
            self.figure(f"baseline: {count} nodes back online after kill -9", result.online_s, "s")
            if result.converged_s is None:
                note = (
                    f"not within {self.args.converge_timeout:g}s; {len(result.drift)} of "
                    f"{count} wrong, e.g. {result.drift[:2]}"
                )
            elif not result.held:
                note = f"then drifted again within {self.args.hold:g}s: {result.drift[:2]}"
            else:
                note = f"and still true {self.args.hold:g}s later"
            self.figure("status matches the real processes", result.converged_s, "s", None, note)
            if result.converged_s is not None and result.online_s:
                self.line("  vs back online", f"{result.converged_s / result.online_s:.2f}x")
            self.line(
                "  instance events recorded after the restart",
                f"{result.events} (real transitions, all while it was down: "
                f"{result.churned} crashes and {result.churned} restarts)",
            )
        finally:
            self.remove_services(daemon, agents)

    def remove_services(self, daemon: Daemon, agents: list[Proc]) -> None:
        """Destroy the recovery system; kill whatever service process is left."""
        try:
            timed(daemon.gdos("destroy", recovery.SYSTEM, "--yes"), daemon.env, timeout=120)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            log(f"destroy {recovery.SYSTEM} failed: {exc}")
        finally:
            for agent in agents:
                for pid_file in agent.home.glob("state/agent/instances/*/*/pid.json"):
                    kill_recorded(pid_file)

    def restart1000(self) -> None:
        count = self.args.agents_mock
        self.section(f"g. nodes back online after a daemon restart, {count} simulated agents")
        log(f"fresh daemon, {count} simulated agents")
        daemon = Daemon.start(self.owned)
        mock, began = self.start_mock(daemon, count)
        try:
            cold, note = self.wait_mock(daemon, mock, began, count)
            self.figure(f"baseline: {count} simulated online, cold", cold, "s", None, note)
            if cold is None:
                return
            for label, sig in (("SIGTERM", signal.SIGTERM), ("kill -9", signal.SIGKILL)):
                log(f"daemon restart after {label}")
                timeout = self.args.online_timeout
                seconds, answered = recovery.online_after_restart(daemon, count, sig, timeout)
                note = (
                    f"{seconds / cold:.2f}x the cold start; from the new daemon's launch, "
                    f"which answered after {answered:.2f}s"
                    if seconds is not None
                    else f"only {daemon.online()} of {count} online after {timeout:g}s"
                )
                self.figure(
                    f"{count} back online after restart ({label})", seconds, "s", None, note
                )
        finally:
            self.owned.stop(mock)
            daemon.stop()

    # -- all ----------------------------------------------------------------------
    @property
    def only(self) -> list[str]:
        return list(self.args.only)

    def run(self) -> None:
        print(f"gdos benchmark, python {sys.version.split()[0]}, {_machine()}", flush=True)
        if {"exec20", "exec1000"} & set(self.only):
            self.start_cost()
        for name in SECTIONS:
            if name in self.only:
                getattr(self, name)()
        self.table()

    def table(self) -> None:
        print("\n== summary ==")
        header = f"{'figure':<44} {'measured':>12}  {'target':>10}  verdict"
        print(header)
        print("-" * len(header))
        for row in self.rows:
            target = "" if row.target is None else f"<= {row.target:g} {row.unit}"
            print(f"{row.figure:<44} {row.shown():>12}  {target:>10}  {row.verdict()}")


def _group(pid: int) -> list[int]:
    """``pid`` and every descendant (the mock cluster's workers)."""
    import psutil

    try:
        return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return []


def _machine() -> str:
    import os

    import psutil

    return (
        f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, {sys.platform}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--only",
        default=",".join(SECTIONS),
        type=lambda text: [s.strip() for s in text.split(",") if s.strip()],
        help=f"sections to run, comma-separated (default: all of {','.join(SECTIONS)})",
    )
    p.add_argument("--agents-large", type=int, default=10_000, help="large RSS phase size")
    p.add_argument("--agents-mock", type=int, default=1_000, help="simulated exec phase size")
    p.add_argument("--real-agents", type=int, default=20, help="real agent processes")
    p.add_argument("--runs", type=int, default=7, help="timed exec runs (after 2 warm-ups)")
    p.add_argument("--settle", type=float, default=45.0, help="s of heartbeats before RSS")
    p.add_argument("--cpu-window", type=float, default=10.0, help="s of agent CPU sampling")
    p.add_argument("--online-timeout", type=float, default=600.0, help="s to wait for online")
    p.add_argument("--churn", type=int, default=5, help="services killed while the daemon is down")
    p.add_argument(
        "--converge-timeout", type=float, default=180.0, help="s to wait for status to converge"
    )
    p.add_argument("--hold", type=float, default=20.0, help="s convergence must then hold")
    p.add_argument(
        "--no-exec-large",
        dest="exec_large",
        action="store_false",
        help="skip the one exec over the large simulated cluster",
    )
    args = p.parse_args(argv)
    unknown = [s for s in args.only if s not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_owned(lambda owned: Bench(args, owned).run())


if __name__ == "__main__":
    raise SystemExit(main())
