"""Messages the inspector's workers post to the app (small, plain; progress ones merge)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from textual.message import Message

from tui.session import Progress


class LoadProgress(Message):
    """The analysis has read more of the trace."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LoadProgress)


class LoadComplete(Message):
    """The analysis finished; the session's analysis is set."""


class LoadFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class ViewReady(Message):
    """A filter/selection was evaluated: these index rows are shown."""

    def __init__(self, generation: int, rows: npt.NDArray[np.int64] | None, total: int) -> None:
        super().__init__()
        self.generation = generation
        self.rows = rows
        self.total = total


class WorkProgress(Message):
    """A slow filter or search is decoding packets."""

    def __init__(self, label: str, done: int, total: int) -> None:
        super().__init__()
        self.label = label
        self.done = done
        self.total = total

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, WorkProgress)


class SearchDone(Message):
    def __init__(self, frame: int | None, term: str, forward: bool) -> None:
        super().__init__()
        self.frame = frame
        self.term = term
        self.forward = forward
