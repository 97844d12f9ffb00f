"""The node's process supervisor with real processes: start, stop, restart policy,
probes, log rotation, versions, recovery after an agent restart, match and adoption."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from gdos.agent.logfiles import rotate_if_needed
from gdos.agent.procs import marked_processes
from gdos.agent.supervisor import Supervisor

from gdos.errors import ErrorCode, GdosError
from tests.waiting import free_port

PY = sys.executable
SLEEPER = "import time\nwhile True:\n    time.sleep(60)\n"
HTTP_SERVICE = """
import http.server, sys
port, status = int(sys.argv[1]), int(sys.argv[2])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(status)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


class Harness:
    """A Supervisor on a tmp root, the states it emitted, and staged packages."""

    def __init__(self, tmp: Path, **options: Any) -> None:
        self.tmp, self.options = tmp, {"poll_interval": 0.05, **options}
        self.root = tmp / "instances"
        self.events: list[dict[str, Any]] = []
        self.sup = self.new_supervisor()

    def new_supervisor(self) -> Supervisor:
        return Supervisor(self.root, self.events.append, **self.options)

    def stage(self, body: str, version: str = "1.0.0", **extra_files: str) -> Path:
        """A package folder whose entrypoint ``run`` is a Python script."""
        staged = self.tmp / f"staged-{uuid.uuid4().hex[:8]}"
        staged.mkdir()
        for name, text in {"run": body, **extra_files}.items():
            path = staged / name
            path.write_text(f"#!{PY}\n" + textwrap.dedent(text))
            path.chmod(0o755)
        return staged

    async def install(
        self,
        body: str = SLEEPER,
        instance: str = "shop/web",
        version: str = "1.0.0",
        **manifest: Any,
    ) -> dict[str, Any]:
        spec = make_spec(instance, version, **manifest)
        return await self.sup.install(spec, self.stage(body, version))

    def states(self, instance: str = "shop/web") -> list[str]:
        return [e["state"] for e in self.events if e["instance"] == instance]


def make_spec(instance: str, version: str, **manifest: Any) -> dict[str, Any]:
    sha = uuid.uuid5(uuid.NAMESPACE_URL, version).hex * 2
    fields = {"name": instance.split("/")[1], "version": version, "entrypoint": "run", **manifest}
    fields.setdefault("stop_timeout", 2)
    package = {"name": fields["name"], "version": version, "sha256": sha, "size": 1}
    return {"instance": instance, "manifest": fields, "package": package, "kind": "managed"}


@pytest.fixture(autouse=True)
def no_service_outlives_its_test(tmp_path: Path) -> Iterator[None]:
    """A failed assertion must not leak services: kill what still carries our marker."""
    yield
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.environ().get("GDOS_INSTANCE_HOME", "").startswith(str(tmp_path)):
                process.kill()


def run(test: Callable[[], Awaitable[None]], timeout: float = 30) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout))


async def until(predicate: Callable[[], Any], timeout: float = 10, what: str = "") -> Any:
    """Poll ``predicate`` on the loop until truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what or predicate}")


async def settled(h: Harness, instance: str) -> dict[str, Any]:
    """The state once the instance is neither starting nor running (it exited)."""
    return await until(
        lambda: (s := state_of(h, instance))["state"] not in ("starting", "running") and s,
        what=f"{instance} to exit",
    )


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def state_of(h: Harness, instance: str = "shop/web") -> dict[str, Any]:
    return next(s for s in h.sup.snapshot() if s["instance"] == instance)


def test_start_with_http_probe_reaches_running_and_stop_ends_it(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    port = free_port()

    async def main() -> None:
        probe = {"type": "http", "url": f"http://127.0.0.1:{port}/health", "interval": 0.05}
        probe["retries"] = 200  # up to 10 s for a loaded machine
        installed = await h.install(HTTP_SERVICE, args=[str(port), "200"], probe=probe)
        assert installed["state"] == "stopped" and installed["version"] == "1.0.0"
        state = await h.sup.start("shop/web")
        assert state["state"] == "running" and state["pid"] and state["error"] is None
        process = psutil.Process(state["pid"])
        home = h.root / "shop" / "web"
        assert process.environ()["GDOS_INSTANCE"] == "shop/web"
        assert Path(process.cwd()) == home / "versions" / f"1.0.0-{state['sha256'][:12]}"
        assert os.getsid(state["pid"]) == state["pid"]  # its own session and group
        assert json.loads((home / "pid.json").read_text())["pid"] == state["pid"]
        assert h.sup.pids("shop/web")[0] == state["pid"]
        stopped = await h.sup.stop("shop/web")
        assert stopped["state"] == "stopped" and stopped["pid"] is None
        assert gone(state["pid"]) and not (home / "pid.json").exists()
        assert h.states() == ["installing", "stopped", "starting", "running", "stopping", "stopped"]
        assert json.loads((home / "instance.json").read_text())["desired"] == "stopped"
        await h.sup.close()

    run(main)


def test_stop_kills_a_grandchild_that_left_the_session(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    marker = tmp_path / "grandchild.pid"
    body = f"""
    import os, signal, time
    if os.fork() == 0:
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with open({str(marker)!r} + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename({str(marker)!r} + ".tmp", {str(marker)!r})
        while True:
            time.sleep(60)
    while True:
        time.sleep(60)
    """

    async def main() -> None:
        await h.install(body, stop_timeout=0.5)
        state = await h.sup.start("shop/web")
        grandchild = int(await until(lambda: marker.exists() and marker.read_text()))
        assert os.getsid(grandchild) != os.getsid(state["pid"])
        assert grandchild in h.sup.pids("shop/web")
        await h.sup.stop("shop/web")
        assert gone(grandchild) and gone(state["pid"])
        await h.sup.close()

    run(main)


def test_stop_entrypoint_asks_the_service_to_stop(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    body = """
    import os, sys, time
    while not os.path.exists("stop-now"):
        time.sleep(0.02)
    print("stopping cleanly", flush=True)
    """
    stopper = 'open("stop-now", "w").close()\n'

    async def main() -> None:
        spec = make_spec("shop/web", "1.0.0", stop_entrypoint="halt", stop_timeout=20)
        await h.sup.install(spec, h.stage(body, halt=stopper))
        state = await h.sup.start("shop/web")
        began = time.monotonic()
        assert (await h.sup.stop("shop/web"))["state"] == "stopped"
        assert time.monotonic() - began < 10 and gone(state["pid"])
        log = h.root / "shop" / "web" / "logs" / "stdout.log"
        assert log.read_text() == "stopping cleanly\n"
        await h.sup.close()

    run(main)


def test_restart_gives_a_new_process(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def main() -> None:
        await h.install()
        first = await h.sup.start("shop/web")
        second = await h.sup.restart("shop/web")
        assert second["state"] == "running" and second["pid"] != first["pid"]
        assert gone(first["pid"])
        assert (await h.sup.start("shop/web"))["pid"] == second["pid"]  # idempotent
        await h.sup.stop("shop/web")
        await h.sup.close()

    run(main)


def test_crashing_service_backs_off_then_fails(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    restart = {"policy": "on-failure", "max_retries": 3, "backoff": 0.05, "backoff_max": 0.1}

    async def main() -> None:
        await h.install("import sys\nsys.exit(1)\n", restart={**restart, "window": 30})
        await h.sup.start("shop/web")
        await until(lambda: state_of(h)["state"] == "failed", what="failed")
        final = state_of(h)
        assert final["restarts"] == 3 and final["pid"] is None
        assert "restarted 3 times in 30s; giving up" in final["error"]
        assert "exited with code 1" in final["error"]
        assert h.states().count("backoff") == 3
        backoff = next(e for e in h.events if e["state"] == "backoff")
        assert "exited with code 1" in backoff["error"]
        await h.sup.close()

    run(main)


def test_clean_exit_with_on_failure_is_stopped_and_policy_no_is_an_error(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    worker = tmp_path / "worker.pid"
    crasher = f"""
    import os, sys, time
    if os.fork() == 0:
        open({str(worker)!r} + ".tmp", "w").write(str(os.getpid()))
        os.rename({str(worker)!r} + ".tmp", {str(worker)!r})
        while True:
            time.sleep(60)
    while not os.path.exists({str(worker)!r}):
        time.sleep(0.01)
    sys.exit(3)
    """

    async def main() -> None:
        await h.install("import sys\nsys.exit(0)\n", restart={"policy": "on-failure"})
        await h.sup.start("shop/web")
        state = await settled(h, "shop/web")
        assert state["state"] == "stopped" and state["restarts"] == 0
        # a crash leaves a worker behind: it must not outlive the service
        await h.install(crasher, "shop/api", restart={"policy": "no"})
        await h.sup.start("shop/api")
        state = await settled(h, "shop/api")
        assert state["state"] == "error" and state["restarts"] == 0
        assert state["error"].startswith("exited with code 3")
        await until(lambda: gone(int(worker.read_text())), what="the worker killed")
        # an exit after it was running, noticed by the monitor
        body = "import sys, time\ntime.sleep(0.3)\nsys.exit(0)\n"
        await h.install(body, "shop/late", restart={"policy": "on-failure"})
        assert (await h.sup.start("shop/late"))["state"] == "running"
        await until(lambda: state_of(h, "shop/late")["state"] == "stopped")
        assert state_of(h, "shop/late")["error"] == "exited with code 0"
        await h.sup.close()

    run(main)


def test_probe_failure_reports_the_reason_and_stops_the_process(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}/health"

    async def main() -> None:
        probe = {"type": "http", "url": url, "retries": 60, "interval": 0.05, "timeout": 1}
        await h.install(HTTP_SERVICE, args=[str(port), "503"], probe=probe)
        result = await h.sup.start("shop/web")
        assert result["state"] == "error" and result["pid"] is None
        # the server may need an attempt or two to listen: the last failure is what counts
        assert result["error"] == f"{url} answered 503 after 60 attempts"
        assert marked_processes("GDOS_INSTANCE_HOME", str(h.root / "shop" / "web")) == []
        tcp = {"type": "tcp", "port": free_port(), "retries": 2, "interval": 0.05}
        await h.install(SLEEPER, "shop/tcp", probe=tcp)
        state = await h.sup.start("shop/tcp")
        assert state["state"] == "error"
        assert state["error"] == f"127.0.0.1:{tcp['port']} refused the connection after 2 attempts"
        await h.sup.close()

    run(main)


def test_logs_rotate_copytruncate(tmp_path: Path) -> None:
    h = Harness(tmp_path, log_max_bytes=20_000, log_backups=2)
    done = tmp_path / "done"
    # three bursts, each bigger than the limit; the next one waits for the truncate
    body = f"""
    import os, sys, time
    for burst in range(3):
        sys.stdout.write(("burst %d " % burst) + "x" * 25_000 + "\\n")
        sys.stdout.flush()
        while os.fstat(1).st_size > 0:
            time.sleep(0.01)
    sys.stdout.write("after\\n")
    sys.stdout.flush()
    open({str(done)!r}, "w").close()
    while True:
        time.sleep(60)
    """

    async def main() -> None:
        await h.install(body)
        await h.sup.start("shop/web")
        logs = h.root / "shop" / "web" / "logs"
        await until(done.exists, what="three rotations")
        assert (logs / "stdout.log").read_bytes() == b"after\n"  # appended at the new end
        assert (logs / "stdout.log.1").read_text().startswith("burst 2 ")
        assert (logs / "stdout.log.2").read_text().startswith("burst 1 ")
        assert not (logs / "stdout.log.3").exists()  # burst 0 was the oldest: dropped
        await h.sup.stop("shop/web")
        await h.sup.close()

    run(main)


def test_rotate_shifts_backups_and_drops_the_oldest(tmp_path: Path) -> None:
    live = tmp_path / "stdout.log"
    for generation in range(4):
        live.write_text(f"generation {generation}\n" * 100)
        assert rotate_if_needed(live, 100, backups=2)
    assert live.stat().st_size == 0
    assert (tmp_path / "stdout.log.1").read_text().startswith("generation 3")
    assert (tmp_path / "stdout.log.2").read_text().startswith("generation 2")
    assert not (tmp_path / "stdout.log.3").exists()
    assert not rotate_if_needed(live, 100, backups=2)


def test_install_keeps_the_previous_version_and_rollback_switches_back(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    versions = h.root / "shop" / "web" / "versions"

    def cwd(state: dict[str, Any]) -> str:
        return Path(psutil.Process(state["pid"]).cwd()).name

    async def main() -> None:
        await h.install(version="1.0.0")
        with pytest.raises(GdosError) as refused:
            await h.sup.rollback("shop/web")
        assert refused.value.code == ErrorCode.INVALID_ARGUMENT
        v1 = await h.sup.start("shop/web")
        v2 = await h.install(version="2.0.0")  # running: stopped and started again
        assert v2["state"] == "running" and v2["version"] == "2.0.0"
        assert v2["previous_version"] == "1.0.0" and gone(v1["pid"])
        assert cwd(v2).startswith("2.0.0-")
        await h.install(version="3.0.0")
        assert sorted(p.name[:5] for p in versions.iterdir()) == ["2.0.0", "3.0.0"]
        back = await h.sup.rollback("shop/web")
        assert back["state"] == "running" and back["version"] == "2.0.0"
        assert back["previous_version"] == "3.0.0" and cwd(back).startswith("2.0.0-")
        await h.sup.stop("shop/web")
        stopped_back = await h.sup.rollback("shop/web")  # stopped: stays stopped
        assert stopped_back["state"] == "stopped" and stopped_back["version"] == "3.0.0"
        await h.sup.close()

    run(main)


def test_recovery_readopts_a_running_service_without_restarting_it(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def main() -> None:
        await h.install()
        first = await h.sup.start("shop/web")
        await h.sup.close()  # the agent goes away; the service must not notice
        assert not gone(first["pid"])
        created = psutil.Process(first["pid"]).create_time()
        h.sup = h.new_supervisor()
        await h.sup.recover()
        again = state_of(h)
        assert again["state"] == "running" and again["pid"] == first["pid"]
        assert again["started"] == first["started"] and again["restarts"] == 0
        assert psutil.Process(first["pid"]).create_time() == created
        # not our child any more: the stop still ends it
        await h.sup.stop("shop/web")
        assert gone(first["pid"])
        await h.sup.close()

    run(main)


def test_recovery_never_touches_a_pid_reused_by_another_process(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    restart = {"policy": "on-failure", "backoff": 0.05}
    stranger = subprocess.Popen([PY, "-c", SLEEPER], start_new_session=True)
    try:

        async def main() -> None:
            await h.install(restart=restart)
            first = await h.sup.start("shop/web")
            await h.sup.close()
            os.killpg(first["pid"], signal.SIGKILL)  # the service died with the agent...
            await until(lambda: gone(first["pid"]))
            pid_file = h.root / "shop" / "web" / "pid.json"
            recorded = json.loads(pid_file.read_text())  # ...and its pid went to a stranger
            recorded.update(pid=stranger.pid, create_time=recorded["create_time"] - 100)
            pid_file.write_text(json.dumps(recorded))
            h.sup = h.new_supervisor()
            await h.sup.recover()
            await until(lambda: state_of(h)["state"] == "running", what="the restart")
            state = state_of(h)
            assert state["pid"] not in (stranger.pid, first["pid"]) and state["restarts"] == 1
            await h.sup.stop("shop/web")
            assert stranger.poll() is None and not gone(stranger.pid)
            await h.sup.close()

        run(main)
    finally:
        stranger.kill()
        stranger.wait()


def test_match_strategy_supervises_the_daemonised_process(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    name = f"gdosd-{uuid.uuid4().hex[:8]}"
    body = f"""
    import os, sys
    if os.fork() == 0:
        os.setsid()
        os.execv({PY!r}, [{name!r}, "-c", "import time\\nwhile True: time.sleep(60)"])
    sys.exit(0)
    """

    async def main() -> None:
        await h.install(body, pid_strategy="match", process_name=name, match_timeout=5)
        state = await h.sup.start("shop/web")
        assert state["state"] == "running"
        assert psutil.Process(state["pid"]).cmdline()[0] == name
        await h.sup.stop("shop/web")
        assert gone(state["pid"])
        missing = f"nothing-{uuid.uuid4().hex[:8]}"
        lost_manifest: dict[str, Any] = {
            "pid_strategy": "match",
            "process_name": missing,
            "match_timeout": 0.3,
        }
        await h.install(SLEEPER, "shop/lost", **lost_manifest)
        lost = await h.sup.start("shop/lost")
        assert lost["state"] == "error"
        assert lost["error"] == f"no process named {missing!r} appeared within 0.3s of starting run"
        await h.sup.close()

    run(main)


def test_adopt_by_pid_file_watch_and_stop(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    external = subprocess.Popen([PY, "-c", SLEEPER], start_new_session=True)
    pid_file = tmp_path / "external.pid"
    pid_file.write_text(f"{external.pid}\n")
    try:

        async def main() -> None:
            spec = {
                "instance": "adopted/ext",
                "kind": "adopted",
                "adopt": {"pid_file": str(pid_file)},
            }
            state = await h.sup.adopt(spec)
            assert state["state"] == "running" and state["pid"] == external.pid
            assert state["kind"] == "adopted" and state["version"] is None
            stopped = await h.sup.stop("adopted/ext")
            assert stopped["state"] == "stopped"
            assert external.wait(5) == -signal.SIGTERM
            with pytest.raises(GdosError) as refused:
                await h.sup.start("adopted/ext")  # no start_cmd
            assert refused.value.code == ErrorCode.START_FAILED
            with pytest.raises(GdosError) as missing:
                nothing = {"pid_file": str(tmp_path / "missing.pid")}
                await h.sup.adopt({**spec, "instance": "adopted/none", "adopt": nothing})
            assert missing.value.code == ErrorCode.PROCESS_NOT_FOUND

        run(main)
    finally:
        external.kill()
        external.wait()


def test_adopted_exit_is_noticed_and_start_cmd_relocates(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    pid_file = tmp_path / "svc.pid"
    script = tmp_path / "svc.py"
    script.write_text(
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "while True: time.sleep(60)\n"
    )
    start_cmd = f"{PY} {script} >/dev/null 2>&1 &"
    adopt = {"pid_file": str(pid_file), "start_cmd": start_cmd}

    async def main() -> None:
        proc = subprocess.Popen(["/bin/sh", "-c", start_cmd], start_new_session=True)
        proc.wait()
        first = int(await until(lambda: pid_file.exists() and pid_file.read_text()))
        state = await h.sup.adopt({"instance": "adopted/svc", "kind": "adopted", "adopt": adopt})
        assert state["pid"] == first
        os.kill(first, signal.SIGKILL)
        await until(lambda: state_of(h, "adopted/svc")["state"] == "stopped", what="exit noticed")
        assert state_of(h, "adopted/svc")["error"] == "process exited"
        started = await h.sup.start("adopted/svc")
        assert started["state"] == "running" and started["pid"] not in (None, first)
        await h.sup.stop("adopted/svc")
        assert gone(started["pid"])
        await h.sup.close()

    run(main)


def test_destroy_removes_the_folder_and_unknown_instances_are_refused(tmp_path: Path) -> None:
    """Start, stop and rollback refuse an instance the node lacks; destroying it is
    done already (its deploy may have failed before the install)."""
    h = Harness(tmp_path)

    async def main() -> None:
        await h.install()
        state = await h.sup.start("shop/web")
        destroyed = await h.sup.destroy("shop/web")
        assert destroyed["state"] == "destroyed" and h.events[-1]["state"] == "destroyed"
        assert gone(state["pid"]) and not (h.root / "shop" / "web").exists()
        assert h.sup.snapshot() == []
        for operation in (h.sup.start, h.sup.stop, h.sup.rollback):
            with pytest.raises(GdosError) as unknown:
                await operation("shop/web")
            assert unknown.value.code == ErrorCode.INSTANCE_UNKNOWN
        again = await h.sup.destroy("shop/web")
        assert again["state"] == h.events[-1]["state"] == "destroyed"
        with pytest.raises(GdosError) as invalid:
            await h.sup.destroy("../etc")
        assert invalid.value.code == ErrorCode.INVALID_ARGUMENT
        with pytest.raises(GdosError) as bad:
            await h.install(instance="../etc")
        assert bad.value.code == ErrorCode.INVALID_ARGUMENT
        with pytest.raises(GdosError):
            await h.install(instance="shop/..")
        assert sorted(p.name for p in h.root.iterdir()) == ["shop"]
        await h.sup.close()

    run(main)


@pytest.mark.parametrize("text", ["", "\n", "  ", "abc\n", "-5"])
def test_pid_file_being_written_reads_as_not_yet(tmp_path: Path, text: str) -> None:
    """`echo $! > FILE` truncates first: a poll in between sees nothing, not a crash."""
    from gdos.agent.adoption import Adoption, locate

    pid_file = tmp_path / "ext.pid"
    pid_file.write_text(text)
    assert locate(Adoption(pid_file=str(pid_file)), None, False) is None
    pid_file.write_text(f"{os.getpid()}\n")
    found = locate(Adoption(pid_file=str(pid_file)), None, False)
    assert found is not None and found.pid == os.getpid()
