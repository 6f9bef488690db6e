"""TCP Fast Open with MPTCP: where the mappings' relative subflow sequence numbers start (H-TFO).

Why: data carried on a SYN occupies TCP sequence space but no mapping covers it. Linux (net/mptcp,
fastopen.c) keeps it outside the MPTCP sequence space: the receiver queues it just before
IDSN + 1 and moves the subflow's sequence offset past it, and the sender numbers its mappings from
the first byte after the SYN data, so relative subflow sequence 1 is ISN + 1 + (SYN data length)
and the MP_CAPABLE-with-data mapping starts at DSN IDSN + 1 on the segment right after the SYN data.
Other senders may count from ISN + 1 as usual. Which numbering a sender uses is read from its first
mapping after the SYN: the segment carrying it must start where the mapping says.
"""

from __future__ import annotations

from analyzer.ingest.segment import TH_SYN, Segment
from analyzer.model import HalfFlow
from analyzer.mptcp.options import Dss, MpCapable

MASK32 = 0xFFFFFFFF


def note_syn_payload(half: HalfFlow, seg: Segment) -> None:
    """Remember the payload of this direction's first SYN that carried any (TFO)."""
    if seg.payload_len and not half.syn_payload and half.isn == seg.seq:
        half.syn_payload = seg.payload_len


def decide_ssn_shift(half: HalfFlow, seg: Segment) -> None:
    """Decide ``half.ssn_shift`` on the first segment after the SYN that carries payload or a mapping.

    The shift is the SYN data length when the segment's first mapping starts at its first byte only if
    the relative numbering begins after the SYN data; otherwise (no mapping, or one that fits the usual
    numbering, or SYN data the peer did not accept and that is sent again from ISN + 1) it is 0.
    """
    if half.ssn_shift is not None or seg.flags & TH_SYN:
        return
    if not half.syn_payload or half.isn is None:
        half.ssn_shift = 0
        return
    ssn = _first_mapping_ssn(seg)
    if ssn is None and not seg.payload_len:
        return  # a pure ACK says nothing yet
    rel = (seg.seq - half.isn) & MASK32
    shifted = ssn is not None and ssn == (rel - half.syn_payload) & MASK32
    half.ssn_shift = half.syn_payload if shifted else 0


def _first_mapping_ssn(seg: Segment) -> int | None:
    """Relative subflow sequence number of the first mapping on ``seg`` (MP_CAPABLE data: 1)."""
    opts = seg.options
    if opts is None or not opts.mptcp:
        return None
    for opt in opts.mptcp:
        if type(opt) is Dss and opt.ssn is not None and opt.data_len:
            return opt.ssn
        if type(opt) is MpCapable and opt.data_len:
            return 1
    return None
