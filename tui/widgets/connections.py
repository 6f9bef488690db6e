"""The connections pane: MPTCP connections → subflows, then plain TCP and fallback flows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from rich.text import Text
from textual.geometry import Region
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from tui.flows import ConnItem, FlowTree, SubflowItem
from tui.widgets.virtual import sync_scrollbars


@dataclass(slots=True, frozen=True)
class Selection:
    """What a tree node stands for: the subflows whose packets it selects (empty = all)."""

    label: str
    subflow_ids: tuple[int, ...]
    conn_id: int | None = None


ALL = Selection("all packets", ())


class ConnectionsTree(Tree[Selection]):
    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False, recompose: bool = False) -> Self:
        """The pane's size comes from the CSS: rebuilding the tree need not lay out the screen."""
        return super().refresh(*regions, repaint=repaint, layout=False, recompose=recompose)

    class Selected(Message):
        def __init__(self, selection: Selection) -> None:
            super().__init__()
            self.selection = selection

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("All packets", data=ALL, id=id)
        self.guide_depth = 2
        self._signature: object = None

    def show(self, tree: FlowTree) -> None:
        """Rebuild from ``tree`` (only when it changed), keeping the cursor on the same item."""
        # While loading, only new flows rebuild the tree (byte counts catch up at the end).
        signature = (
            [(c.label, c.detail if tree.final else "", tuple(s.label for s in c.subflows)) for c in tree.connections],
            len(tree.other), tree.other_total, tree.final,
        )  # fmt: skip
        if signature == self._signature:
            return
        self._signature = signature
        keep = self.cursor_node.data if self.cursor_node is not None else None
        self.clear()
        root = self.root
        root.expand()
        n = len(tree.connections)
        root.set_label(f"All packets — {n} MPTCP connection{'s' if n != 1 else ''}")
        for conn in tree.connections:
            self._add_conn(root, conn, expand=n <= 8)
        if tree.other:
            ids = tree.all_subflow_ids
            selection = Selection("plain TCP / fallback flows", ids)
            other = root.add(f"Plain TCP / fallback ({tree.other_total})", data=selection, expand=len(tree.other) <= 4)
            for item in tree.other:
                if isinstance(item, ConnItem):
                    self._add_conn(other, item, expand=False)
                else:
                    self._add_subflow(other, item)
            if tree.other_total > len(tree.other):
                leaf = other.add_leaf(f"… {tree.other_total - len(tree.other)} more", data=Selection("", ids))
                leaf.allow_expand = False
        if keep is not None:
            self._restore(keep)
        self.call_after_refresh(sync_scrollbars, self)

    def _restore(self, keep: Selection) -> None:
        def walk(node: TreeNode[Selection]) -> TreeNode[Selection] | None:
            if node.data == keep:
                return node
            for child in node.children:
                found = walk(child)
                if found is not None:
                    return found
            return None

        found = walk(self.root)
        if found is not None:
            self.move_cursor(found)

    def _add_conn(self, parent: TreeNode[Selection], conn: ConnItem, expand: bool) -> None:
        label = Text.assemble((conn.label, "bold"), "  ", (conn.detail, "dim"))
        node = parent.add(label, data=Selection(f"connection {conn.id}", conn.subflow_ids, conn.id), expand=expand)
        for sf in conn.subflows:
            self._add_subflow(node, sf, conn.id)

    def _add_subflow(self, parent: TreeNode[Selection], sf: SubflowItem, conn_id: int | None = None) -> None:
        label = Text.assemble(sf.label, "  ", (sf.detail, "dim"))
        leaf = parent.add_leaf(label, data=Selection(f"subflow {sf.id}", (sf.id,), conn_id))
        leaf.allow_expand = False

    def on_tree_node_selected(self, event: Tree.NodeSelected[Selection]) -> None:
        event.stop()
        if event.node.data is not None:
            self.post_message(self.Selected(event.node.data))
