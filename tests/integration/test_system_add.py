"""`gdos system add` on an existing module changes only what is given, says so, and
`system show` shows every override."""

from __future__ import annotations

from pathlib import Path

from tests.harness import Fleet
from tests.integration.services_kit import SLEEPER, ok, package


def _module(fleet: Fleet, name: str) -> dict:
    modules = fleet.gdos_json("system", "show", "shop")["modules"]
    return next(m for m in modules if m["name"] == name)


def test_redefining_a_module_keeps_what_is_not_given(fleet: Fleet, tmp_path: Path) -> None:
    for version in ("1.0.0", "2.0.0"):
        ok(fleet.gdos("package", "push", str(package(tmp_path, "sleeper", SLEEPER, version))))
    ok(fleet.gdos("system", "create", "shop"))
    ok(fleet.gdos("system", "add", "shop", "db", "-p", "sleeper"))
    ok(fleet.gdos("system", "add", "shop", "cache", "-p", "sleeper"))
    ok(
        fleet.gdos(
            "system", "add", "shop", "web", "-p", "sleeper@1.0.0", "--env", "LOG=debug",
            "--env", "MODE=a", "--after", "cache", "--arg", "--port", "--arg", "8080",
        )
    )  # fmt: skip

    said = ok(fleet.gdos("system", "add", "shop", "web", "-p", "sleeper@2.0.0", "--after", "db"))
    assert "updated shop/web" in said
    assert "sleeper@1.0.0 -> sleeper@2.0.0" in said and "after cache -> db" in said
    web = _module(fleet, "web")
    assert web["version"] == "2.0.0" and web["after"] == ["db"]
    assert web["overrides"]["env"] == {"LOG": "debug", "MODE": "a"}
    assert web["overrides"]["args"] == ["--port", "8080"]

    said = ok(fleet.gdos("system", "add", "shop", "web", "-p", "sleeper@2.0.0", "--env", "MODE=b"))
    assert "env MODE=a -> MODE=b" in said
    assert _module(fleet, "web")["overrides"]["env"] == {"LOG": "debug", "MODE": "b"}
    assert _module(fleet, "web")["after"] == ["db"]

    shown = ok(fleet.gdos("system", "show", "shop"))
    assert "LOG=debug" in shown and "MODE=b" in shown and "--port 8080" in shown

    said = ok(fleet.gdos("system", "add", "shop", "web", "-p", "sleeper@2.0.0", "--replace"))
    assert "replaced shop/web" in said
    web = _module(fleet, "web")
    assert web["overrides"] == {} and web["after"] == []


def test_an_unchanged_redefinition_says_so(fleet: Fleet, tmp_path: Path) -> None:
    ok(fleet.gdos("package", "push", str(package(tmp_path, "sleeper", SLEEPER))))
    ok(fleet.gdos("system", "create", "shop"))
    assert "added shop/db" in ok(fleet.gdos("system", "add", "shop", "db", "-p", "sleeper"))
    assert "unchanged" in ok(fleet.gdos("system", "add", "shop", "db", "-p", "sleeper"))
