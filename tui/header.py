"""The dashboard's one-line header: which view, the fleet's counts, the daemon, read-only.

Like the first line of k9s or htop, it answers at a glance what the screen
shows and against what: the view's name, a READ-ONLY flag when changes are
refused, nodes online of enrolled, instances running of known, and the
daemon's socket (or that it is unreachable). ``header_text`` only formats
what it is given; the app calls ``HeaderLine.show`` when any of it changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rich.text import Text

from gdos.model import InstanceState

SEPARATOR = ("  │  ", "dim")


def short_path(path: Path) -> str:
    """``path`` with the home directory written ``~`` (the header has one line)."""
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


def header_text(
    view: str,
    nodes: Iterable[Mapping[str, Any]],
    instances: Iterable[Mapping[str, Any]],
    daemon: str,
    connected: bool,
    read_only: bool,
) -> Text:
    """``Nodes │ READ-ONLY │ nodes 2/3 online │ svc 4/5 running │ daemon ~/.gdos/gdosd.sock``."""
    nodes, instances = list(nodes), list(instances)
    online = sum(1 for n in nodes if n.get("online"))
    running = sum(1 for i in instances if i.get("state") == InstanceState.RUNNING)
    parts: list[tuple[str, str]] = [(view.capitalize(), "bold")]
    if read_only:
        parts.append(("READ-ONLY", "bold reverse yellow"))
    parts.append((f"nodes {online}/{len(nodes)} online", "" if online == len(nodes) else "yellow"))
    parts.append((f"svc {running}/{len(instances)} running", ""))
    if connected:
        parts.append((f"daemon {daemon}", ""))
    else:
        parts.append((f"daemon {daemon} unreachable", "bold red"))
    text = Text(" ", no_wrap=True, overflow="ellipsis")
    for i, (words, style) in enumerate(parts):
        if i:
            text.append(*SEPARATOR)
        text.append(words, style=style)
    return text
