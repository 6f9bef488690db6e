"""The help screen (``?``): keys, the filter language and its fields."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from tui.filter import field_help

KEYS = """\
# mptcp-analyze inspector

## Keys

| key | what it does |
|---|---|
| `↑` `↓` `PgUp` `PgDn` `Home` `End` | move in the packet list |
| `Enter` | packet list: open the detail tree · findings: jump to the frame |
| `Tab` / `Shift+Tab` | next / previous pane |
| `/` | edit the filter (Enter applies, empty clears) |
| `Esc` | clear the filter and the connection selection · close a view |
| `Ctrl+F` · `n` · `N` | search (a filter expression or text in the Info column) · next · previous |
| `g` | go to frame |
| `]` `[` | next / previous frame with a finding |
| `t` | time: relative · absolute (UTC) · delta |
| `c` | show / hide the connections pane (below 100 columns it takes the screen until a connection is chosen) |
| `x` | detail tree ⇄ hex dump, when the screen is too narrow for both side by side |
| `e` | findings view |
| `a` | diagnosis: what happened to each connection, in sentences (Enter: go to the frame) |
| `s` | follow the stream of the selected connection |
| `p` | plots: DSN, throughput and Data ACK per subflow |
| `d` | dark / light theme |
| `Ctrl+P` | command palette |
| `?` | this help |
| `q` | quit |

## Filter language

`subflow == 2 and dss.fin` · `option == ADD_ADDR` · `finding` · `frame > 100` ·
`not mptcp` · `(syn or fin) and conn == 1` · `finding == DSS-004` · `ip.addr == 10.0.0.1`

Operators: `==` `!=` `<` `<=` `>` `>=`, `and` `or` `not` (or `&&` `||` `!`), parentheses.
A field on its own tests that it is present or true. Numbers may be hex (`0x1f`).
Fields marked * need every candidate packet decoded again, so they are slower on large traces.

| field | meaning |
|---|---|
"""

INDEXED = {"frame", "time", "subflow", "conn", "dir", "len", "tcp", "mptcp", "option", "finding", "syn", "fin",
           "rst", "ack", "psh", "urg", "tcp.flags", "dss", "dss.fin", "dss.map", "dss.infinite", "dss.dsn64",
           "dss.ack64"}  # fmt: skip


def help_markdown() -> str:
    rows = [f"| `{name}`{'' if name in INDEXED else ' *'} | {text} |" for name, text in field_help()]
    return KEYS + "\n".join(rows) + "\n"


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Markdown(help_markdown())

    def action_close(self) -> None:
        self.dismiss(None)
