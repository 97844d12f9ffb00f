"""Package and service benchmark, run by hand: ``python bench/deploy.py``.

Uses the real CLI (``gdos package push``, ``system``, ``deploy``, ``start``,
``status``, ``destroy``) against a fresh daemon and --agents real agents on
this host, each agent in its own temporary GDOS_HOME:

  deploy    a --size-mb package of incompressible bytes deployed to every
            agent at once (``gdos deploy S --match 'bd-*' --wait``): wall
            time, aggregate MB/s (size x agents / time) and each agent's RSS
            before and during it (sampled every 50 ms), beside a baseline
            from the same run: the same zip copied with shutil.copyfile to
            --agents fresh files, one after the other (median of
            --copy-runs), and for context the local part of an agent's work
            (copy, sha256, unzip) done --agents times in a row. Also the
            MB/s of ``gdos package push`` of that zip. Each timed step
            starts after an (untimed) os.sync, so none pays for the dirty
            pages of the one before.
  start     ``gdos start S`` of a 3-level system (db, api --after db, web
            --after api), each module a tiny Python TCP server on every
            agent, probe "none": wall time until it returns (every instance
            running). Then a probe-gated variant: one module per agent, each
            on its own port with a tcp probe, so each level starts only once
            the level below accepts connections.

Prints figures and ratios and a summary table; asserts nothing. The agents
and the daemon share this machine's cores, which the deploy figure feels.
Everything started here is removed on the way out, also on Ctrl-C or
failure: each system is destroyed, any service process an agent left behind
(found through its pid.json, pid and create_time both matching) is killed,
then the daemon and agents with their process groups.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import (  # the folder is put on the path just above
    Daemon,
    Owned,
    Proc,
    free_port,
    gdos_argv,
    kill_recorded,
    log,
    rss_mb,
    run_owned,
    timed,
    wait_for,
)

from gdos.pkg.archive import build_zip

PREFIX = "bd-"
MB = 1e6

# A tiny TCP server: waits --delay seconds (start-up work), then listens on the
# port in argv[1] (0: any free port) and answers each connection with "ok".
SERVER = f"""#!{sys.executable}
import socket, sys, time
port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
with socket.create_server(("127.0.0.1", port)) as server:
    print("listening on", server.getsockname()[1], flush=True)
    while True:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"ok\\n")
"""


@dataclass
class Row:
    figure: str
    value: float | None
    unit: str
    target: float | None = None
    higher_is_better: bool = False
    note: str = ""

    def shown(self) -> str:
        if self.value is None:
            return "n/a"
        digits = 3 if self.unit in ("s", "x") and self.value < 10 else 1
        return f"{self.value:.{digits}f} {self.unit}"

    def verdict(self) -> str:
        if self.target is None or self.value is None:
            return ""
        margin = f"{100 * (self.value - self.target) / self.target:+.0f}%"
        good = self.value >= self.target if self.higher_is_better else self.value <= self.target
        return f"meets ({margin})" if good else f"MISSES ({margin})"


class RssSampler:
    """Samples several processes' RSS every ``every`` seconds; keeps each one's peak."""

    def __init__(self, pids: list[int], every: float = 0.05) -> None:
        self.procs = [psutil.Process(pid) for pid in pids]
        self.peaks = [0.0] * len(pids)
        self.samples = 0
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for i, proc in enumerate(self.procs):
                with contextlib.suppress(psutil.Error):
                    self.peaks[i] = max(self.peaks[i], proc.memory_info().rss / MB)
            self.samples += 1
            self._stop.wait(self.every)

    def close(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        return self.peaks


class Bench:
    def __init__(self, args: argparse.Namespace, owned: Owned) -> None:
        self.args, self.owned = args, owned
        self.rows: list[Row] = []
        self.systems: list[str] = []
        self.daemon: Daemon | None = None
        self.agents: list[Proc] = []
        self.work = owned.home("gdw-")

    # -- output ---------------------------------------------------------------------
    def section(self, title: str) -> None:
        print(f"\n== {title} ==", flush=True)

    def line(self, label: str, text: str) -> None:
        print(f"{label:<46} {text}", flush=True)

    def figure(self, label: str, value: float | None, unit: str, **extra: Any) -> Row:
        row = Row(label, value, unit, **extra)
        self.rows.append(row)
        note = f"  ({row.note})" if row.note else ""
        self.line(label, row.shown() + note)
        return row

    # -- the CLI ----------------------------------------------------------------------
    @property
    def d(self) -> Daemon:
        assert self.daemon is not None
        return self.daemon

    def gdos(self, *args: str, timeout: float = 600) -> str:
        """Run ``gdos ARGS`` against the daemon; its stdout, or RuntimeError with stderr."""
        result = subprocess.run(
            self.d.gdos(*args), env=self.d.env, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"gdos {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-1500:]}{result.stderr[-1500:]}"
            )
        return result.stdout

    def timed_gdos(self, *args: str, timeout: float = 600) -> float:
        return timed(self.d.gdos(*args), self.d.env, timeout=timeout)

    def status(self, target: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(self.gdos("status", target, "--json"))
        return rows

    def define(self, system: str, modules: list[tuple[str, str, list[str]]]) -> None:
        """``gdos system create`` and one ``system add`` per (module, package, extra)."""
        self.gdos("system", "create", system)
        self.systems.append(system)
        for module, package, extra in modules:
            self.gdos("system", "add", system, module, "--package", package, *extra)

    def package(self, name: str, files: dict[str, bytes | str], **manifest: Any) -> Path:
        fields = {"name": name, "version": "1.0.0", "entrypoint": "run", **manifest}
        return build_zip(self.work / f"{name}.zip", files, manifest=fields)

    # -- the fleet --------------------------------------------------------------------
    def start_fleet(self) -> None:
        count = self.args.agents
        log(f"starting a daemon and {count} real agents")
        self.daemon = Daemon.start(self.owned)
        token = self.d.token(uses=count)
        for i in range(count):
            argv = [
                *gdos_argv(),
                "agent",
                "run",
                "--join",
                token,
                "--name",
                f"{PREFIX}{i:02d}",
                "--backoff-max",
                "0.5",
            ]
            home = self.owned.home(f"gd{i:02d}-")
            self.agents.append(self.owned.spawn(f"agent-{i:02d}", argv, home))
        wait_for(lambda: self.d.online() >= count, 90, f"{count} agents online")
        log(f"{count} agents online")
        time.sleep(2)  # let start-up work (imports, facts) settle

    # -- 1. deploy of a large package ----------------------------------------------------
    def deploy(self) -> None:
        size, count = self.args.size_mb, len(self.agents)
        self.section(f"1. a {size} MB package deployed to {count} agents at once")
        log(f"building a {size} MB package of random bytes")
        blob = os.urandom(size * 1024 * 1024)
        zip_path = self.package("bigpkg", {"run": SERVER, "blob.bin": blob})
        del blob
        zip_mb = zip_path.stat().st_size / MB
        self.line("package zip", f"{zip_mb:.1f} MB (deflate of random bytes: stored size)")

        runs = self.args.copy_runs
        log(f"baseline: shutil.copyfile of the zip to {count} fresh files, {runs} runs")
        copy_times = [self.copy_baseline(zip_path, count) for _ in range(runs)]
        copy_s = statistics.median(copy_times)
        copy_rate = zip_mb * count / copy_s
        shown = ", ".join(f"{zip_mb * count / t:.0f}" for t in copy_times)
        self.figure(
            f"baseline: copyfile x{count} (median of {runs})",
            copy_rate,
            "MB/s",
            note=f"{copy_s:.2f} s each; runs: {shown} MB/s",
        )

        log("context: copy + sha256 + unzip of the zip, locally, sequentially")
        floor_s = self.unpack_floor(zip_path, count)
        self.line(
            f"context: copy+sha256+unzip x{count}",
            f"{zip_mb * count / floor_s:.1f} MB/s ({floor_s:.2f} s; the local part of "
            "what each agent does, on one core, no network)",
        )

        log("gdos package push")
        os.sync()
        push_s = self.timed_gdos("package", "push", str(zip_path))
        self.figure(
            "gdos package push", zip_mb / push_s, "MB/s", note=f"{push_s:.2f} s for {zip_mb:.0f} MB"
        )

        self.define("bigsys", [("blob", "bigpkg", [])])
        pids = [a.pid for a in self.agents]
        before = [rss_mb(pid) for pid in pids]
        log(f"gdos deploy bigsys --match '{PREFIX}*' --wait")
        watched = [psutil.Process(pid) for pid in [self.d.proc.pid, *pids]]
        cpu_before = [_cpu(p) for p in watched]
        os.sync()
        sampler = RssSampler(pids, every=0.05)
        try:
            deploy_s = self.timed_gdos("deploy", "bigsys", "--match", f"{PREFIX}*", "--wait")
        finally:
            peaks = sampler.close()
        cpu = [_cpu(p) - b for p, b in zip(watched, cpu_before, strict=True)]
        rows = self.status("bigsys")
        states = sorted({r["state"] for r in rows})
        self.figure(
            "gdos deploy --wait, wall time",
            deploy_s,
            "s",
            note=f"{len(rows)} instances, state {', '.join(states)}",
        )
        rate = zip_mb * count / deploy_s
        self.figure("gdos deploy, aggregate", rate, "MB/s", note=f"{zip_mb:.0f} MB x {count}")
        self.figure(
            "ratio gdos deploy / copyfile",
            rate / copy_rate,
            "x",
            target=0.8,
            higher_is_better=True,
            note=f"{count} agents + daemon share {os.cpu_count()} cores; each agent also "
            "verifies the sha256 and unpacks; copyfile copies in the kernel, page cache to "
            "page cache",
        )
        slowest = zip_mb * count / max(copy_times)
        self.line("  vs the slowest copyfile run", f"{rate / slowest:.3f} x ({slowest:.0f} MB/s)")
        self.line(
            "agent RSS before the deploy",
            f"median {statistics.median(before):.1f} MB, max {max(before):.1f} MB",
        )
        self.figure(
            "agent peak RSS during the deploy (median)",
            statistics.median(peaks),
            "MB",
            note=f"max {max(peaks):.1f} MB; {sampler.samples} samples per agent, 50 ms apart",
        )
        growth = [p - b for p, b in zip(peaks, before, strict=True)]
        self.line(
            "  growth over before",
            f"median {statistics.median(growth):+.1f} MB, max {max(growth):+.1f} MB "
            f"(package {zip_mb:.0f} MB)",
        )
        busy = 100 * sum(cpu) / (deploy_s * (os.cpu_count() or 1))
        self.line(
            "CPU time during the deploy",
            f"daemon {cpu[0]:.2f} s, agents {sum(cpu[1:]):.2f} s (max {max(cpu[1:]):.2f} s "
            f"each): {busy:.0f}% of {os.cpu_count()} cores over the wall time",
        )

    def copy_baseline(self, zip_path: Path, count: int) -> float:
        """Seconds to copy ``zip_path`` to ``count`` fresh files, one after the other."""
        copies = self.work / "copies"
        copies.mkdir()
        try:
            os.sync()  # start without dirty pages left by earlier steps (untimed)
            began = time.perf_counter()
            for i in range(count):
                shutil.copyfile(zip_path, copies / f"copy-{i:02d}.zip")
            return time.perf_counter() - began
        finally:
            shutil.rmtree(copies)

    def unpack_floor(self, zip_path: Path, count: int) -> float:
        """Seconds for the local part of an agent's work, ``count`` times in a row:
        copy the zip, sha256 it, extract it (no network, no daemon)."""
        folder = self.work / "unpacked"
        folder.mkdir()
        try:
            os.sync()
            began = time.perf_counter()
            for i in range(count):
                copy = folder / f"copy-{i:02d}.zip"
                shutil.copyfile(zip_path, copy)
                with open(copy, "rb") as f:
                    hashlib.file_digest(f, "sha256")
                with zipfile.ZipFile(copy) as archive:
                    archive.extractall(folder / f"x-{i:02d}")
            return time.perf_counter() - began
        finally:
            shutil.rmtree(folder)

    # -- 2. start of a 3-level system -----------------------------------------------------
    def start(self) -> None:
        count = len(self.agents)
        self.section(f"2. start of a 3-level system (db <- api <- web) over {count} agents")
        self.gdos("package", "push", str(self.package("tier", {"run": SERVER}, args=["0"])))
        levels = [("db", "tier", []), ("api", "tier", ["--after", "db"])]
        levels.append(("web", "tier", ["--after", "api"]))
        self.define("tri", levels)
        log(f"gdos deploy tri --match '{PREFIX}*' --wait")
        deploy_s = self.timed_gdos("deploy", "tri", "--match", f"{PREFIX}*", "--wait")
        self.line("gdos deploy tri --wait (3 small modules)", f"{deploy_s:.3f} s")
        log("gdos start tri")
        start_s = self.timed_gdos("start", "tri")
        rows = self.status("tri")
        running = sum(1 for r in rows if r["state"] == "running")
        self.figure(
            "gdos start, 3 levels, probe none",
            start_s,
            "s",
            note=f"{running} of {len(rows)} instances running on return",
        )

        # probe-gated: one module per agent, its own port, tcp probe, 0.2 s start-up
        delay = 0.2
        ports = {name: free_port() for name in ("db", "api", "web")}
        for name, port in ports.items():
            probe = {"type": "tcp", "port": port, "retries": 100, "interval": 0.1}
            zip_path = self.package(
                f"tier-{name}", {"run": SERVER}, args=[str(port), str(delay)], probe=probe
            )
            self.gdos("package", "push", str(zip_path))
        after = {"db": [], "api": ["--after", "db"], "web": ["--after", "api"]}
        self.define("trip", [(n, f"tier-{n}", after[n]) for n in ports])
        nodes = {name: f"{PREFIX}{i % count:02d}" for i, name in enumerate(ports)}
        for name, node in nodes.items():
            self.gdos("deploy", f"trip/{name}", "--node", node, "--wait")
        log("gdos start trip (tcp probes)")
        wall = time.time()
        start_s = self.timed_gdos("start", "trip")
        rows = self.status("trip")
        running = sum(1 for r in rows if r["state"] == "running")
        self.figure(
            "gdos start, 3 levels, tcp probe",
            start_s,
            "s",
            note=f"{running} of {len(rows)} running; one per agent; each server listens "
            f"{delay:g} s after it starts, so >= {3 * delay:.1f} s",
        )
        events = json.loads(self.gdos("events", "trip", "--json", "-n", "100"))
        for name in ports:
            times = [
                e["time"] - wall
                for e in events
                if e["module"] == name and e["state"] == "running" and e["time"] >= wall - 1
            ]
            shown = f"{min(times):.3f} s" if times else "not seen"
            self.line(f"  {name} running after", f"{shown} (on {nodes[name]}, port {ports[name]})")

    # -- all ------------------------------------------------------------------------------
    def run(self) -> None:
        print(f"gdos deploy benchmark, python {sys.version.split()[0]}, {_machine()}", flush=True)
        try:
            self.start_fleet()
            self.deploy()
            self.start()
            self.table()
        finally:
            self.cleanup()

    def table(self) -> None:
        print("\n== summary ==")
        print(f"{'figure':<46} {'value':>14}  {'target':>10}  verdict")
        for row in self.rows:
            if row.target is None:
                target = ""
            else:
                target = f"{'>=' if row.higher_is_better else '<='} {row.target:g} {row.unit}"
            print(f"{row.figure:<46} {row.shown():>14}  {target:>10}  {row.verdict()}")

    def cleanup(self) -> None:
        """Destroy every system, then kill any service process an agent left behind.

        A second Ctrl-C skips the remaining destroys, never the killing."""
        try:
            if self.daemon is not None and self.daemon.proc.alive():
                for system in self.systems:
                    log(f"gdos destroy {system} --yes")
                    try:
                        self.gdos("destroy", system, "--yes", timeout=120)
                    except (RuntimeError, subprocess.TimeoutExpired) as exc:
                        log(f"destroy {system} failed: {exc}")
        except KeyboardInterrupt:
            log("interrupted; skipping the remaining destroys")
        finally:
            killed = 0
            for agent in self.agents:
                instances = agent.home / "state" / "agent" / "instances"
                for pid_file in instances.glob("*/*/pid.json"):
                    killed += kill_recorded(pid_file)
            if killed:
                log(f"killed {killed} service processes the agents left behind")


def _cpu(proc: psutil.Process) -> float:
    """User + system CPU seconds of ``proc`` so far (0 once it is gone)."""
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def _machine() -> str:
    return f"{os.cpu_count()} cpus, {psutil.virtual_memory().total / 1e9:.0f} GB RAM"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10, help="real agents on this host")
    parser.add_argument("--size-mb", type=int, default=100, help="size of the large package")
    parser.add_argument("--copy-runs", type=int, default=3, help="baseline copy runs (median)")
    args = parser.parse_args()
    return run_owned(lambda owned: Bench(args, owned).run())


if __name__ == "__main__":
    sys.exit(main())
