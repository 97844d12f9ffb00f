"""Node output on an operator's terminal cannot drive it (issue 11, item 9).

A command's output and a log line may hold ESC/OSC sequences (set the
window title, clear the screen). On a terminal, ``gdos exec`` and ``gdos
logs`` show them as visible escapes; piped, the bytes stay exactly what the
node produced, for the program that reads them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pexpect

from tests.harness import Fleet, short_home

TITLE = b"\x1b]0;pwned\x07"
CLEAR = b"\x1b[2J"


def _on_a_tty(fleet: Fleet, *args: str) -> bytes:
    argv = ["-m", "gdos.cli.main", *args]
    env = fleet.env(fleet.daemon_home)
    child = pexpect.spawn(sys.executable, argv, env=env, dimensions=(40, 200), timeout=60)
    child.expect(pexpect.EOF)
    child.close()
    return bytes(child.before)


def test_exec_and_logs_escape_node_sequences_on_a_tty_only(fleet: Fleet) -> None:
    root = short_home("gl-")
    fleet.homes.append(root)
    log = Path(root) / "app.log"
    log.write_bytes(b"before " + TITLE + CLEAR + b"after\n")
    fleet.start_agent("n1", "--log-root", str(root), join=fleet.token())
    fleet.wait_online("n1")
    command = ["exec", "n1", "--", "printf", "title\\033]0;pwned\\007 clear\\033[2J end\\n"]

    shown = _on_a_tty(fleet, *command)
    assert b"\\x1b]0;pwned\\x07" in shown and b"\\x1b[2J" in shown, shown
    assert TITLE not in shown and CLEAR not in shown
    piped = fleet.gdos(*command)
    assert "title\x1b]0;pwned\x07 clear\x1b[2J end" in piped.stdout  # byte-faithful

    shown = _on_a_tty(fleet, "logs", "n1", "--path", str(log))
    assert b"before \\x1b]0;pwned\\x07\\x1b[2Jafter" in shown, shown
    assert TITLE not in shown and CLEAR not in shown
    piped = fleet.gdos("logs", "n1", "--path", str(log))
    assert piped.stdout == "before \x1b]0;pwned\x07\x1b[2Jafter\n"
