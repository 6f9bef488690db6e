"""The one record type the capture reader yields (pure loop and compiled loop alike).

Why a module of its own: ``capture`` loads the compiled loop at import time, and the compiled loop
builds these records, so the type lives where both can import it without a cycle.
"""

from __future__ import annotations

from typing import NamedTuple


class Record(NamedTuple):
    """One packet record of a capture, with where it sits in the file.

    ``offset`` is where the record starts (pcap record header, pcapng packet block) in the capture
    stream as read: the file itself, or the decompressed stream of a gzip capture.
    :class:`analyzer.ingest.capture.RecordFile` reads the record back from it.
    """

    frame: int  # 1-based, in file order: the analyzer's frame number
    offset: int
    ts: float
    link_type: int
    data: bytes
    origlen: int


# ``Record(...)`` goes through a generated Python ``__new__``; the record loops run once per packet,
# so they build the tuple directly: ``new_record(Record, (frame, offset, ts, link_type, data, origlen))``.
new_record = tuple.__new__
