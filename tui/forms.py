"""Modal forms of the Services view: the deploy form and a yes/no confirmation.

Neither talks to the daemon. The deploy form returns an ``svc.run`` body
(``deploy_request``); the hint under its target comes from a callback the
caller gives it, so the form only shows text.

Enter behaves the same in every form (``EnterSubmits``, also the exec form's):
it submits once every field is filled, else it moves to the first empty one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

Describe = Callable[[str], Awaitable[str]]


class EnterSubmits:
    """Enter in any field submits the form when all are filled, else goes to an empty one.

    A prefilled form (deploy from a selected row) thus needs one Enter, as
    the exec form does; submitting an empty field shows the form's sentence.
    """

    def submit(self) -> None:
        raise NotImplementedError

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        screen = cast(ModalScreen[Any], self)
        empty = [box for box in screen.query(Input) if not box.value.strip()]
        if not empty or event.input in empty:
            self.submit()
        else:
            screen.set_focus(empty[0])


def deploy_request(target: str, nodes: str) -> dict[str, Any]:
    """The ``svc.run`` body for the deploy form's two fields.

    ``target`` is SYSTEM or SYSTEM/MODULE (the package and version come from
    the module's definition). ``nodes`` are names separated by spaces or
    commas, one glob such as ``web-*``, or ``all``. Raises ValueError with a
    sentence for the operator.
    """
    target = target.strip()
    words = [w for w in nodes.replace(",", " ").split() if w]
    if not target:
        raise ValueError("give a target: SYSTEM or SYSTEM/MODULE")
    if "@" in target:
        raise ValueError("deploy takes SYSTEM or SYSTEM/MODULE; put the nodes in the nodes field")
    if not words:
        raise ValueError("give nodes: names, a glob such as web-*, or all")
    body: dict[str, Any] = {"action": "deploy", "target": target, "wait": True}
    globs = [w for w in words if any(c in w for c in "*?[")]
    if words == ["all"]:
        body["match"] = "*"
    elif globs:
        if len(words) > 1:
            raise ValueError("give either one glob or node names, not both")
        body["match"] = globs[0]
    else:
        body["nodes"] = words
    return body


class DeployForm(EnterSubmits, ModalScreen[dict[str, Any] | None]):
    """Target and nodes; returns the ``svc.run`` deploy body, or None.

    While the target is typed, ``describe(system)`` supplies the hint (the
    system's modules and their packages).
    """

    BINDINGS = [Binding("escape", "dismiss(None)", "Close")]
    DEFAULT_CSS = """
    DeployForm { align: center middle; }
    DeployForm > Vertical {
        width: 80; height: auto; border: round $accent; background: $surface; padding: 1;
    }
    DeployForm #deploy-hint { color: $text-muted; }
    DeployForm #deploy-error { color: $error; }
    """

    def __init__(self, target: str = "", nodes: str = "", describe: Describe | None = None):
        super().__init__()
        self.initial, self.describe = (target, nodes), describe

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "deploy"
            yield Label("Target: SYSTEM or SYSTEM/MODULE (package and version from its modules)")
            yield Input(self.initial[0], placeholder="shop/web", id="deploy-target")
            yield Label("", id="deploy-hint", markup=False)
            yield Label("Nodes (names, a glob such as web-*, or all)")
            yield Input(self.initial[1], placeholder="web-1 web-2", id="deploy-nodes")
            yield Label("", id="deploy-error", markup=False)
            with Horizontal():
                yield Button("Deploy", variant="primary", id="deploy-run")
                yield Button("Cancel", id="deploy-cancel")

    def on_mount(self) -> None:
        self.query_one("#deploy-target", Input).focus()
        self._hint(self.initial[0])

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "deploy-target":
            event.stop()
            self._hint(event.value)

    @work(group="deploy-hint", exclusive=True)
    async def _hint(self, target: str) -> None:
        system = target.strip().partition("/")[0].partition("@")[0]
        text = ""
        if self.describe is not None and system:
            await asyncio.sleep(0.15)  # typing: ask once the name settles
            text = await self.describe(system)
        # The answer may come after the form was submitted and removed: then
        # there is no label left to update, which must not fail the dashboard.
        for label in self.query("#deploy-hint").results(Label):
            label.update(text)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "deploy-run":
            self.submit()
        else:
            self.dismiss(None)

    def submit(self) -> None:
        try:
            body = deploy_request(
                self.query_one("#deploy-target", Input).value,
                self.query_one("#deploy-nodes", Input).value,
            )
        except ValueError as exc:
            self.query_one("#deploy-error", Label).update(str(exc))
            return
        self.dismiss(body)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question before something destructive; ``No`` has the focus."""

    BINDINGS = [
        Binding("y", "dismiss(True)", "Yes"),
        Binding("n,escape", "dismiss(False)", "No"),
    ]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 70; height: auto; border: round $error; background: $surface; padding: 1;
    }
    ConfirmScreen #confirm-question { margin-bottom: 1; }
    """

    def __init__(self, title: str, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.title_text, self.question, self.yes = title, question, yes

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.title_text
            yield Label(self.question, id="confirm-question", markup=False)
            with Horizontal():
                yield Button(f"{self.yes} (y)", variant="error", id="confirm-yes")
                yield Button("No (n)", id="confirm-no")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")
