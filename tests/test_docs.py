"""The docs stay true to the CLI and to each other.

Every ``gdos ...`` command shown in README.md and docs/*.md (a line of a fenced
code block, or an inline code span that starts with ``gdos ``) must name a
command path that ``gdos --help`` lists: the command tree is read from the real
CLI's help output, one subprocess per group or command, cached. Every relative
link between these files must point to a file that exists and, for a link into
one of them, to a heading that exists. A failure names the file and the line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def shown_name(file: Path) -> str:
    return str(file.relative_to(ROOT)) if file.is_relative_to(ROOT) else file.name


# --- the command tree, from the real help output -------------------------------------


@dataclass(frozen=True)
class HelpPage:
    exists: bool
    subcommands: frozenset[str]  # empty for a command that is not a group


# Runs the real console-script entry (gdos.cli.main:main) once per path, as
# `gdos PATH --help` would, in one process: a subprocess per path costs ~0.2 s.
HELP_DRIVER = """
import sys
from gdos.cli.main import main
for line in sys.stdin.read().splitlines():
    sys.argv = ["gdos", *line.split(), "--help"]
    print("\\0path " + line, flush=True)
    try:
        main()
        code = 0
    except SystemExit as exit:
        code = exit.code
    print(f"\\0exit {code}", flush=True)
"""


def parse_help(output: str, exit_code: int) -> HelpPage:
    """A help page: does the command exist, and which subcommands it lists."""
    if exit_code != 0 or not output.startswith("Usage: gdos"):
        return HelpPage(False, frozenset())
    names: set[str] = set()
    in_commands = False
    for line in output.splitlines():
        if not line.startswith(" "):
            in_commands = line.strip() == "Commands:"
            continue
        match = re.match(r"^  ([a-z][\w-]*)(?:\s|$)", line)
        if in_commands and match:
            names.add(match.group(1))
    return HelpPage(True, frozenset(names))


def help_env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}


def help_texts(paths: list[tuple[str, ...]]) -> dict[tuple[str, ...], tuple[str, int]]:
    """``gdos PATH --help`` for every path: ``{path: (stdout, exit code)}``."""
    proc = subprocess.run(
        [sys.executable, "-c", HELP_DRIVER],
        input="".join(" ".join(path) + "\n" for path in paths),
        cwd=ROOT,
        env=help_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    texts = {}
    for chunk in proc.stdout.split("\0path ")[1:]:
        head, _, rest = chunk.partition("\n")
        output, _, code = rest.rpartition("\0exit ")
        texts[tuple(head.split())] = (output, int(code.strip()))
    assert set(texts) == set(paths), proc.stdout
    return texts


HELP_PAGES: dict[tuple[str, ...], HelpPage] = {}


def cli_help(path: tuple[str, ...]) -> HelpPage:
    if path not in HELP_PAGES:
        HELP_PAGES.update((p, parse_help(*text)) for p, text in help_texts([path]).items())
    return HELP_PAGES[path]


def load_help_pages(all_words: list[tuple[str, ...]]) -> None:
    """Read every help page the docs' commands need, one batch per depth."""
    wanted: set[tuple[str, ...]] = set()

    def probe(path: tuple[str, ...]) -> HelpPage:
        if path in HELP_PAGES:
            return HELP_PAGES[path]
        wanted.add(path)
        return HelpPage(True, frozenset())  # unknown yet: stop here this round

    while True:
        wanted.clear()
        for words in all_words:
            command_problem(words, probe)
        if not wanted:
            return
        texts = help_texts(sorted(wanted))
        HELP_PAGES.update((p, parse_help(*text)) for p, text in texts.items())


# --- commands shown in the docs -------------------------------------------------------


@dataclass(frozen=True)
class Shown:
    file: Path
    line: int
    words: tuple[str, ...]  # what follows "gdos"

    def where(self) -> str:
        return f"{shown_name(self.file)}:{self.line}"


# "gdos" as a command word: not part of a path, module or longer name.
GDOS_WORD = re.compile(r"(?<![\w./\[-])gdos[ \t]+([^\n]*)")
INLINE_GDOS = re.compile(r"`gdos ([^`]+)`")
FENCE = re.compile(r"^\s*```")


def split_fences(text: str) -> tuple[list[tuple[int, str]], str]:
    """The fenced lines ``(number, text)``, and the prose with fenced lines blanked."""
    fenced: list[tuple[int, str]] = []
    prose: list[str] = []
    inside = False
    for number, line in enumerate(text.split("\n"), 1):
        if FENCE.match(line):
            inside = not inside
            prose.append("")
        elif inside:
            fenced.append((number, line))
            prose.append("")
        else:
            prose.append(line)
    return fenced, "\n".join(prose)


def shown_commands(file: Path, text: str) -> Iterator[Shown]:
    fenced, prose = split_fences(text)
    for number, line in fenced:
        for match in GDOS_WORD.finditer(line):
            yield Shown(file, number, tuple(match.group(1).split()))
    for match in INLINE_GDOS.finditer(prose):
        number = prose.count("\n", 0, match.start()) + 1
        yield Shown(file, number, tuple(match.group(1).split()))


def _is_command_word(word: str) -> bool:
    """A word that must be a subcommand when it follows a group (not an option,
    placeholder, redirection, quoted argument or the start of a comment)."""
    return bool(re.fullmatch(r"[a-z][\w-]*(\|[a-z][\w-]*)*", word))


def command_problem(
    words: tuple[str, ...], help_of: Callable[[tuple[str, ...]], HelpPage] = cli_help
) -> str | None:
    """Why ``gdos WORDS`` does not name a command, or None when it does."""

    def walk(path: tuple[str, ...], rest: tuple[str, ...]) -> str | None:
        if not rest or not _is_command_word(rest[0]):
            return None
        page = help_of(path)
        if not page.subcommands:  # a command: the rest are its arguments
            return None
        for word in rest[0].split("|"):  # "run|start" shows two commands at once
            if word not in page.subcommands:
                listed = ", ".join(sorted(page.subcommands))
                return (
                    f"'gdos {' '.join((*path, word))}' is not a command; "
                    f"'gdos {' '.join(path)} --help' lists: {listed}"
                )
            problem = walk((*path, word), rest[1:])
            if problem:
                return problem
        return None

    return walk((), words)


def command_failures(
    files: list[Path], help_of: Callable[[tuple[str, ...]], HelpPage] = cli_help
) -> list[str]:
    shown = [s for file in files for s in shown_commands(file, file.read_text())]
    if help_of is cli_help:
        load_help_pages([s.words for s in shown])
    failures = []
    for each in shown:
        problem = command_problem(each.words, help_of)
        if problem:
            failures.append(f"{each.where()}: gdos {' '.join(each.words)}\n    {problem}")
    return failures


# --- links ---------------------------------------------------------------------------

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    _, prose = split_fences(text)
    seen: dict[str, int] = {}
    found = set()
    for line in prose.split("\n"):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def link_failures(files: list[Path]) -> list[str]:
    failures = []
    for file in files:
        _, prose = split_fences(file.read_text())
        prose = re.sub(r"`[^`\n]*`", lambda m: " " * len(m.group(0)), prose)  # code spans
        for match in LINK.finditer(prose):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
                continue
            where = f"{shown_name(file)}:{prose.count(chr(10), 0, match.start()) + 1}"
            name, _, anchor = target.partition("#")
            dest = (file.parent / name).resolve() if name else file
            if not dest.exists():
                failures.append(f"{where}: link to {target}: {name} does not exist")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
                failures.append(f"{where}: link to {target}: no heading '#{anchor}' in {name}")
    return failures


# --- the tests -----------------------------------------------------------------------


def test_every_command_in_the_docs_exists() -> None:
    failures = command_failures(doc_files())
    assert not failures, "commands shown in the docs that gdos does not have:\n" + "\n".join(
        failures
    )


def test_help_pages_are_what_the_gdos_command_prints() -> None:
    """The batch reader sees exactly what `gdos PATH --help` prints on its own."""
    for path in [(), ("alert", "rule")]:
        real = subprocess.run(
            [sys.executable, "-m", "gdos.cli.main", *path, "--help"],
            cwd=ROOT,
            env=help_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert help_texts([path])[path] == (real.stdout, real.returncode)
    assert {"node", "exec", "alert"} <= cli_help(()).subcommands
    assert cli_help(("alert", "rule")).subcommands == {"add", "list", "rm"}
    assert cli_help(("exec",)) == HelpPage(True, frozenset())
    assert not cli_help(("node", "bogus")).exists


def test_the_docs_show_commands() -> None:
    """Guard against a parser that silently finds nothing to check."""
    shown = [s for f in doc_files() for s in shown_commands(f, f.read_text())]
    assert len(shown) > 100
    firsts = {s.words[0] for s in shown if s.words}
    assert {"node", "exec", "deploy", "logs", "shell", "tui", "top"} <= firsts


def test_every_link_between_the_docs_resolves() -> None:
    failures = link_failures(doc_files())
    assert not failures, "broken links:\n" + "\n".join(failures)


def test_readme_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [p.name for p in doc_files()[1:] if f"(docs/{p.name}" not in readme]
    assert not missing, f"README.md does not link to: {missing}"


def test_the_checks_catch_a_wrong_command_and_a_broken_link(tmp_path: Path) -> None:
    """The checks can fail, and say where: a fake CLI tree, a doc with mistakes."""
    tree = {
        (): {"node", "exec", "daemon"},
        ("node",): {"list", "drain"},
        ("daemon",): {"run", "start"},
    }

    def fake_help(path: tuple[str, ...]) -> HelpPage:
        return HelpPage(True, frozenset(tree.get(path, set())))

    doc = tmp_path / "page.md"
    doc.write_text(
        "# Page\n\n"
        "```sh\n"
        "gdos node list --json        # fine\n"
        "gdos node bogus web-1        # line 5\n"
        "echo x | gdos nope           # line 6\n"
        "gdos exec web-1 -- uptime    # fine: exec takes arguments\n"
        "```\n\n"
        "Run `gdos daemon run|stop --x` or `gdos node drain NAME`; see\n"  # line 10
        "[here](#page), [there](missing.md) and [a heading](#nowhere).\n"  # line 11
    )
    failures = command_failures([doc], fake_help)
    assert [f.split(": gdos")[0].rsplit(":", 1)[1] for f in failures] == ["5", "6", "10"]
    assert "'gdos node bogus' is not a command" in failures[0]
    assert "'gdos daemon stop' is not a command" in failures[2]

    broken = link_failures([doc])
    assert len(broken) == 2
    assert broken[0].startswith("page.md:11: link to missing.md")
    assert broken[1].startswith("page.md:11: link to #nowhere")
