"""The findings view: every finding, sortable; Enter jumps to its frame; the rule is explained."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from analyzer.findings import Finding
from analyzer.rules import RULES

SORTS = {
    "severity": lambda f: (-f.severity, f.frames[0] if f.frames else 0),
    "rule": lambda f: (f.rule, f.frames[0] if f.frames else 0),
    "connection": lambda f: (f.connection or 0, f.subflow or 0, f.frames[0] if f.frames else 0),
    "frame": lambda f: (f.frames[0] if f.frames else 0, -f.severity),
}


def explain(finding: Finding) -> str:
    rule = RULES.get(finding.rule)
    where = []
    if finding.connection is not None:
        where.append(f"connection {finding.connection}")
    if finding.subflow is not None:
        where.append(f"subflow {finding.subflow}")
    if finding.frames:
        shown = ", ".join(str(f) for f in finding.frames[:12]) + (" …" if len(finding.frames) > 12 else "")
        where.append(f"frames {shown}")
    head = f"[b]{finding.rule}[/b] ({finding.severity.label})"
    if rule is None:
        return f"{head}\n{finding.message}\n{'; '.join(where)}"
    return (
        f"{head} — [b]{rule.title}[/b]  RFC 8684 {rule.section}\n"
        f"{finding.message}\n[dim]{'; '.join(where)}[/dim]\n\n{rule.description}"
    )


class FindingsScreen(Screen[int | None]):
    """Dismisses with the frame to jump to (Enter), or None (Escape)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back"),
        Binding("v", "sort('severity')", "Sort: severity"),
        Binding("r", "sort('rule')", "rule"),
        Binding("c", "sort('connection')", "connection"),
        Binding("f", "sort('frame')", "frame"),
    ]

    def __init__(self, findings: list[Finding], suppressed: dict[str, int] | None = None) -> None:
        super().__init__()
        self.findings = list(findings)
        self.suppressed = suppressed or {}
        self.order: list[Finding] = []
        self.sort_key = "frame"

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="findings-body"):
            yield Static(id="findings-title")
            yield DataTable(id="findings-table", cursor_type="row", zebra_stripes=True)
            yield Static(id="findings-explain")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Sev", "Rule", "Conn", "SF", "Frame", "Message")
        self.action_sort(self.sort_key)
        table.focus()

    def action_sort(self, key: str) -> None:
        self.sort_key = key
        self.order = sorted(self.findings, key=SORTS[key])
        table = self.query_one(DataTable)
        table.clear()
        for f in self.order:
            table.add_row(
                f.severity.label, f.rule, str(f.connection or ""), str(f.subflow or ""),
                str(f.frames[0]) if f.frames else "", f.message,
            )  # fmt: skip
        suppressed = sum(self.suppressed.values())
        extra = f", {suppressed} more suppressed (per-rule cap)" if suppressed else ""
        self.query_one("#findings-title", Static).update(
            f"{len(self.findings)} finding{'s' if len(self.findings) != 1 else ''}{extra} — sorted by {key}"
            + ("" if self.findings else "\nNo findings: the trace follows every rule the analyzer checks.")
        )
        self._explain(0)

    def _explain(self, row: int) -> None:
        text = explain(self.order[row]) if 0 <= row < len(self.order) else ""
        self.query_one("#findings-explain", Static).update(text)

    @on(DataTable.RowHighlighted)
    def highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._explain(event.cursor_row)

    @on(DataTable.RowSelected)
    def selected(self, event: DataTable.RowSelected) -> None:
        finding = self.order[event.cursor_row]
        if finding.frames:
            self.dismiss(finding.frames[0])
        else:
            self.notify("This finding names no frame", severity="warning")

    def action_close(self) -> None:
        self.dismiss(None)
