"""Whether a package may run on a node: its manifest's ``os`` and ``arch``
against the node's reported facts.

A deploy is refused before anything is sent when they disagree, naming the
node's value. A node that has not reported a value (an old or odd agent) is
not refused on that account: gdos cannot know better than to try.
"""

from __future__ import annotations

from typing import Any

from gdos.errors import ErrorCode, GdosError
from gdos.pkg.manifest import ARCH_ALIASES


def check_platform(package: dict[str, Any], node: str, facts: dict[str, Any]) -> None:
    """PLATFORM_MISMATCH when ``node``'s OS or architecture is not the manifest's."""
    manifest = package["manifest"]
    ref = f"{package['name']}@{package['version']}"
    wanted_os, node_os = manifest.get("os") or "linux", str(facts.get("os") or "")
    if node_os and node_os != wanted_os:
        raise GdosError(
            ErrorCode.PLATFORM_MISMATCH,
            f"{ref} is built for os {wanted_os!r} but node {node} runs {node_os!r}; "
            "deploy it to a matching node, or push a package built for it.",
        )
    wanted_arch = _arch(manifest.get("arch"))
    node_arch = _arch(facts.get("arch"))
    if wanted_arch and node_arch and wanted_arch != node_arch:
        raise GdosError(
            ErrorCode.PLATFORM_MISMATCH,
            f"{ref} is built for arch {manifest['arch']!r} but node {node} is {facts['arch']!r}; "
            "deploy it to a matching node, or push a package built for it.",
        )


def _arch(value: Any) -> str:
    text = str(value or "").lower()
    return ARCH_ALIASES.get(text, text)
