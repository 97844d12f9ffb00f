"""A deploy goes only to nodes whose OS (and architecture, when named) the package is built for."""

from __future__ import annotations

import platform
from pathlib import Path

from tests.harness import Fleet
from tests.integration.services_kit import SLEEPER, ok, package, status


def _deploy(fleet: Fleet, tmp_path: Path, name: str, **fields: str) -> tuple[int, str]:
    ok(fleet.gdos("package", "push", str(package(tmp_path, name, SLEEPER, **fields))))
    ok(fleet.gdos("system", "create", name))
    ok(fleet.gdos("system", "add", name, "m", "--package", name))
    result = fleet.gdos("deploy", name, "--node", "n1", "--wait")
    return result.returncode, result.stderr + result.stdout


def test_a_package_for_another_os_or_arch_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start_agent("n1", join=fleet.token())
    fleet.wait_online("n1")

    code, said = _deploy(fleet, tmp_path, "winsvc", os="windows")
    assert code == 1, said
    assert said.startswith("error[platform_mismatch]: winsvc@1.0.0 is built for os 'windows'")
    assert "node n1 runs 'linux'" in said
    assert "winsvc/m@n1" not in status(fleet)

    other = "s390x" if platform.machine() != "s390x" else "x86_64"
    code, said = _deploy(fleet, tmp_path, "oddarch", arch=other)
    assert code == 1 and f"node n1 is '{platform.machine()}'" in said, said

    code, said = _deploy(fleet, tmp_path, "native", arch=platform.machine())
    assert code == 0, said
    assert status(fleet)["native/m@n1"]["state"] == "stopped"
