"""Redefining a module with ``gdos system add``: what changes, and saying so.

A module that exists already keeps every setting the new ``system add`` does
not give: ``--env`` merges key by key, ``--arg``, a probe and ``--after``
replace only their own setting, and the package reference is always the one
given. ``--replace`` starts over from what is given. The changes come back as
short phrases for the operator (``package web@1.0.0 -> web@2.0.0``).
"""

from __future__ import annotations

from typing import Any

OVERRIDES = ("args", "env", "probe")


def given_overrides(body: dict[str, Any]) -> dict[str, Any]:
    """The overrides a ``system.add`` request gives (absent or null means not given)."""
    return {k: body[k] for k in OVERRIDES if body.get(k) is not None}


def merged(existing: dict[str, Any] | None, body: dict[str, Any], replace: bool) -> dict[str, Any]:
    """The module's new ``overrides`` and ``after``, keeping what ``body`` does not give."""
    given = given_overrides(body)
    after = body.get("after")
    if existing is None or replace:
        return {"overrides": given, "after": sorted(set(after or []))}
    overrides = dict(existing.get("overrides") or {})
    for key, value in given.items():
        overrides[key] = {**overrides.get("env", {}), **value} if key == "env" else value
    kept_after = existing.get("after") or []
    return {
        "overrides": overrides,
        "after": sorted(set(after)) if after is not None else kept_after,
    }


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two module rows, as phrases (empty when nothing does)."""
    out = []
    if _ref(before) != _ref(after):
        out.append(f"package {_ref(before)} -> {_ref(after)}")
    if before.get("after", []) != after.get("after", []):
        out.append(f"after {_names(before.get('after'))} -> {_names(after.get('after'))}")
    old, new = before.get("overrides") or {}, after.get("overrides") or {}
    if old.get("args") != new.get("args"):
        out.append(f"args {_args(old.get('args'))} -> {_args(new.get('args'))}")
    old_env, new_env = old.get("env") or {}, new.get("env") or {}
    for key in sorted(set(old_env) | set(new_env)):
        if old_env.get(key) != new_env.get(key):
            out.append(f"env {_pair(key, old_env)} -> {_pair(key, new_env)}")
    if old.get("probe") != new.get("probe"):
        out.append(
            f"probe {describe_probe(old.get('probe'))} -> {describe_probe(new.get('probe'))}"
        )
    return out


def describe_probe(probe: dict[str, Any] | None) -> str:
    if not probe:
        return "(manifest's)"
    target = probe.get("url") or probe.get("port") or ""
    return f"{probe.get('type', '?')} {target}".strip()


def _ref(row: dict[str, Any]) -> str:
    return f"{row['package']}@{row.get('version') or 'latest'}"


def _names(names: list[str] | None) -> str:
    return ", ".join(names) if names else "(none)"


def _args(args: list[str] | None) -> str:
    return " ".join(args) if args is not None else "(manifest's)"


def _pair(key: str, env: dict[str, str]) -> str:
    return f"{key}={env[key]}" if key in env else f"{key} (unset)"
