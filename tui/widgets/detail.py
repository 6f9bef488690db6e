"""The detail tree of the selected packet (built from :mod:`tui.dissect` nodes)."""

from __future__ import annotations

from typing import ClassVar, Self

from rich.text import Text
from textual.geometry import Region
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from analyzer.findings import Finding
from analyzer.rules import RULES
from tui.dissect import Node
from tui.widgets.virtual import sync_scrollbars

STYLE_CLASSES = {"ok": "detail-tree--ok", "bad": "detail-tree--bad", "warn": "detail-tree--warn"}


class DetailTree(Tree[tuple[int, int]]):
    """Each node's data is the byte range ``(start, end)`` it describes."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"detail-tree--ok", "detail-tree--bad", "detail-tree--warn"}

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("packet", data=(0, 0), id=id)
        self.show_root = False
        self.guide_depth = 2

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False, recompose: bool = False) -> Self:
        """Never ask for a screen layout: the tree's box is fixed by the CSS, only its content changes.

        A Tree relays out the whole screen on every node it adds; for a packet's 60 nodes that made
        each step through the packet list cost a full layout.
        """
        return super().refresh(*regions, repaint=repaint, layout=False, recompose=recompose)

    def _label(self, node: Node) -> Text:
        if node.style:
            style = self.get_component_rich_style(STYLE_CLASSES[node.style], partial=True)
            return Text(node.label, style=style)
        return Text(node.label)

    def show(self, nodes: list[Node], findings: list[Finding] | None = None, expand_top: int = -1) -> None:
        self.clear()
        if findings:
            top = self.root.add(
                Text(f"Findings on this frame ({len(findings)})",
                     style=self.get_component_rich_style("detail-tree--bad", partial=True)),
                data=(0, 0), expand=True,
            )  # fmt: skip
            for finding in findings:
                rule = RULES.get(finding.rule)
                section = f" {rule.section}" if rule else ""
                leaf = top.add(f"{finding.severity.label} {finding.rule}{section}: {finding.message}", data=(0, 0))
                leaf.allow_expand = False
        for i, node in enumerate(nodes):
            self._add(self.root, node, expand=node.expanded or i == expand_top)
        self.move_cursor(None)
        self.call_after_refresh(sync_scrollbars, self)

    def _add(self, parent: TreeNode[tuple[int, int]], node: Node, expand: bool) -> None:
        if node.children:
            child = parent.add(self._label(node), data=(node.start, node.end), expand=expand)
            for sub in node.children:
                self._add(child, sub, expand=sub.expanded)
        else:
            parent.add_leaf(self._label(node), data=(node.start, node.end))
