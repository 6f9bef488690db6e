"""The seeded payload both lab programs send, so a test can re-derive what went over the wire."""

from __future__ import annotations

import hashlib
import random

from analyzer.lab.config import DATA_CHUNK


class DataStream:
    """Seeded pseudo-random byte stream, generated lazily so large transfers stay cheap.

    The stream is ``Random(seed).randbytes(DATA_CHUNK)`` repeated (last piece shorter), so for
    sizes up to 1 MiB it equals ``random.Random(seed).randbytes(n)``.
    """

    def __init__(self, seed: str, total: int) -> None:
        self._rng = random.Random(seed)
        self.remaining = total
        self._buf = b""
        self._pos = 0

    def read(self, n: int) -> bytes:
        """Return up to ``n`` next bytes (empty once the stream is exhausted)."""
        if self._pos >= len(self._buf):
            if self.remaining <= 0:
                return b""
            size = min(DATA_CHUNK, self.remaining)
            self._buf = self._rng.randbytes(size)
            self._pos = 0
            self.remaining -= size
        out = self._buf[self._pos:self._pos + n]
        self._pos += len(out)
        return out


def c2s_seed(seed: int, index: int) -> str:
    """Seed for the client→server data of connection ``index``."""
    return f"mptcp-lab:{seed}:{index}:c2s"


def s2c_seed(seed: int, c2s_sha256: str) -> str:
    """Seed for the server→client data: derived from what the server received (no side channel)."""
    return f"mptcp-lab:{seed}:s2c:{c2s_sha256}"


def expected_sha256(seed: str, total: int) -> str:
    """SHA-256 of a DataStream, for tests that re-derive what was sent."""
    stream, h = DataStream(seed, total), hashlib.sha256()
    while chunk := stream.read(DATA_CHUNK):
        h.update(chunk)
    return h.hexdigest()
