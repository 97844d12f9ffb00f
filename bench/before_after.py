"""Two builds of gdos side by side: ``gdos --help`` and ``gdos exec`` on real agents.

``python bench/before_after.py [--baseline REV]`` installs the baseline
revision (default: the commit before issue 13's restructuring) and the
current working tree into two private folders, then measures both in the
same run, interleaved so that machine load falls on both alike:

  help   wall time of ``gdos --help`` (one process start, imports, Typer)
  exec   ``gdos exec --all -- true`` against a daemon with --agents real
         agent processes, one fleet per build, both fleets up at once

It prints each median, every run, and the ratio after/before. It asserts
nothing: a ratio above 1 is a finding to look into.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from support import Daemon, Owned, log, run_owned, timed, wait_for

ROOT = Path(__file__).resolve().parent.parent
# main before the issue-13 restructuring (gdos/model.py was its first step)
DEFAULT_BASELINE = "75e3d69"


@dataclass
class Build:
    label: str
    site: Path  # a folder holding the installed gdos package, put first on PYTHONPATH

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.site)}

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-P", "-m", "gdos.cli.main", *args]


def install(label: str, source: Path, into: Path) -> Build:
    """A regular (non-editable) install of ``source`` into ``into``, without dependencies."""
    log(f"installing the {label} build from {source}")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(into),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    return Build(label, into)


def revision_source(rev: str, work: Path) -> Path:
    """A revision checked out in a throwaway folder (git archive, no worktree)."""
    out = work / f"src-{rev}"
    out.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out


def interleaved(
    builds: list[Build], runs: int, command: dict[str, list[str]], env: dict[str, dict[str, str]]
) -> dict[str, list[float]]:
    """Each build's wall times, run alternately so load drift hits both."""
    times: dict[str, list[float]] = {b.label: [] for b in builds}
    for build in builds:  # warm-ups: page cache, bytecode
        for _ in range(2):
            timed(command[build.label], env[build.label])
    for _ in range(runs):
        for build in builds:
            times[build.label].append(timed(command[build.label], env[build.label]))
    return times


def report(title: str, times: dict[str, list[float]]) -> None:
    print(f"\n== {title}", flush=True)
    medians = {label: statistics.median(values) for label, values in times.items()}
    for label, values in times.items():
        shown = ", ".join(f"{v:.3f}" for v in values)
        print(f"{label:<7} median {medians[label]:.3f} s   runs: {shown}", flush=True)
    before, after = medians["before"], medians["after"]
    print(f"after/before {after / before:.2f}x ({after - before:+.3f} s)", flush=True)


def fleet(owned: Owned, build: Build, agents: int) -> Daemon:
    """A daemon and ``agents`` real agents of one build (PYTHONPATH is inherited)."""
    os.environ["PYTHONPATH"] = str(build.site)
    try:
        daemon = Daemon.start(owned)
        token = daemon.token(uses=agents)
        for i in range(agents):
            argv = build.argv("agent", "run", "--join", token, "--name", f"{build.label}-{i}")
            owned.spawn(f"{build.label}-agent-{i}", argv, owned.home("gba-"))
        wait_for(lambda: daemon.online() >= agents, 60, f"{agents} {build.label} agents online")
    finally:
        os.environ.pop("PYTHONPATH", None)
    return daemon


def measure(args: argparse.Namespace, owned: Owned) -> None:
    work = Path(tempfile.mkdtemp(prefix="gdos-ba-"))
    owned.homes.append(work)
    builds = [
        install("before", revision_source(args.baseline, work), work / "before"),
        install("after", revision_source(args.after, work) if args.after else ROOT, work / "after"),
    ]
    print(
        f"baseline {args.baseline}, after {args.after or f'= working tree of {ROOT}'}", flush=True
    )
    help_times = interleaved(
        builds,
        args.runs,
        {b.label: b.argv("--help") for b in builds},
        {b.label: b.env for b in builds},
    )
    report(f"gdos --help (median of {args.runs} after 2 warm-ups, interleaved)", help_times)
    daemons = {b.label: fleet(owned, b, args.agents) for b in builds}
    exec_times = interleaved(
        builds,
        args.runs,
        {b.label: b.argv("exec", "--all", "--", "true") for b in builds},
        {b.label: {**b.env, "GDOS_HOME": str(daemons[b.label].home)} for b in builds},
    )
    report(
        f"gdos exec --all -- true on {args.agents} real agents "
        f"(median of {args.runs} after 2 warm-ups, interleaved)",
        exec_times,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision to compare with")
    parser.add_argument("--after", help="git revision to measure (default: the working tree)")
    parser.add_argument("--runs", type=int, default=15, help="timed runs per build")
    parser.add_argument("--agents", type=int, default=5, help="real agents per fleet")
    args = parser.parse_args(argv)
    return run_owned(lambda owned: measure(args, owned))


if __name__ == "__main__":
    sys.exit(main())
