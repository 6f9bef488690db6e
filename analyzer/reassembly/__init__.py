"""Data-stream reassembly: DSS mappings → per-direction byte streams (RFC 8684 §3.3)."""

from analyzer.reassembly.mapper import Reassembler
from analyzer.reassembly.stream import DataStream

__all__ = ["DataStream", "Reassembler"]
