"""Real packages for the services tests: small Python programs zipped with a manifest.

Every service is a script with a ``#!<this python>`` shebang, so agents run
it with the interpreter of the test run. ``web`` is an HTTP server that also
starts a grandchild (to prove stop kills the whole group); ``crash`` exits
at once; ``forker`` daemonises a process with a distinctive name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from gdos.pkg.archive import build_zip
from tests.harness import Fleet, wait_for

WEB = f"""#!{sys.executable}
import http.server, os, subprocess, sys
port = int(sys.argv[1])
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
with open("grandchild.pid", "w") as f:
    f.write(str(child.pid))
print("web", os.environ.get("GDOS_INSTANCE"), "listening on", port, flush=True)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (os.environ.get("GREETING", "hello") + " " + os.environ.get("VERSION", "")).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

CRASH = f"""#!{sys.executable}
import sys
print("crashing", flush=True)
sys.exit(3)
"""

SLEEPER = f"""#!{sys.executable}
import time
print("up", flush=True)
time.sleep(3600)
"""

FORKER = """#!/bin/bash
# Daemonises like many classic services: the entrypoint exits, the real process lives on.
(exec -a gdos-forked-svc sleep 3600 </dev/null >/dev/null 2>&1 &)
exit 0
"""


def manifest(name: str, version: str = "1.0.0", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": name, "version": version, "entrypoint": "run"}
    base.update(fields)
    return base


def package(tmp: Path, name: str, script: str, version: str = "1.0.0", **fields: Any) -> Path:
    """A package zip with ``script`` as its entrypoint ``run``."""
    env = {"VERSION": version, **fields.pop("env", {})}
    return build_zip(
        tmp / f"{name}-{version}.zip",
        {"run": script},
        manifest=manifest(name, version, env=env, **fields),
    )


def web_package(tmp: Path, port: int, version: str = "1.0.0") -> Path:
    return package(
        tmp,
        "web",
        WEB,
        version,
        args=[str(port)],
        probe={"type": "http", "url": f"http://127.0.0.1:{port}/", "retries": 50, "interval": 0.2},
        stop_timeout=5,
    )


def http_get(port: int) -> str | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:
            return str(reply.read().decode())
    except OSError:
        return None


def status(fleet: Fleet, target: str = "") -> dict[str, dict[str, Any]]:
    rows = fleet.gdos_json("status", *([target] if target else []))
    return {r["instance"]: r for r in rows}


def wait_state(
    fleet: Fleet, instance: str, states: str | tuple[str, ...], timeout: float = 30
) -> dict[str, Any]:
    wanted = (states,) if isinstance(states, str) else states
    wait_for(
        lambda: status(fleet).get(instance, {}).get("state") in wanted,
        timeout,
        f"{instance} in {wanted} (now {status(fleet).get(instance)})",
    )
    return status(fleet)[instance]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def instance_dir(fleet: Fleet, node: str, system: str, module: str) -> Path:
    return fleet.agents[node].home / "state" / "agent" / "instances" / system / module


def pid_record(fleet: Fleet, node: str, system: str, module: str) -> dict[str, Any]:
    return dict(json.loads((instance_dir(fleet, node, system, module) / "pid.json").read_text()))


def alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def grandchild_pid(fleet: Fleet, node: str, system: str, module: str) -> int:
    found = list(instance_dir(fleet, node, system, module).glob("versions/*/grandchild.pid"))
    assert found, "the service wrote no grandchild.pid"
    return int(max(found, key=os.path.getmtime).read_text())
