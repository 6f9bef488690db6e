"""Per-packet export of MPTCP data for pandas/polars users (``--csv`` / ``--parquet``).

Rows stream to a temporary CSV during the single pass (memory stays flat); connection numbers and
connection-level directions are only final at the end, so the rows are then rewritten once with
them filled in — as CSV, or as Parquet through pyarrow, batch by batch. The 64-bit DSN and Data ACK
are the values the data levels published for the packet (analyzer.datalevels: expanded once, the same
the checker and the TUI show); the IDSN-relative columns are computed in the second step.
Every column is described in docs/export.md (a test keeps the two in step).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from analyzer.ingest.segment import Segment
from analyzer.model import Analysis, Connection, Subflow
from analyzer.mptcp.datalevel import PacketLevels
from analyzer.mptcp.options import Dss, MpCapable, Subtype

COLUMNS = (
    "frame", "time", "connection", "subflow", "direction", "tcp_flags", "seq", "ack", "payload_len",
    "options", "dsn", "dsn64", "ssn", "data_len", "data_ack", "data_ack64", "data_fin", "checksum",
)  # fmt: skip
# Added later, consistently named: ``*_bits`` is the width on the wire (32/64), ``*_expanded`` the full 64-bit
# value, ``*_relative`` the value minus the sender's IDSN (the first data byte is 1, as Wireshark numbers TCP).
# ``dsn64`` (a value) and ``data_ack64`` (a flag) keep their first meaning for existing users.
NEW_COLUMNS = (
    "dsn_bits", "dsn_expanded", "dsn_relative", "data_ack_bits", "data_ack_expanded", "data_ack_relative",
)  # fmt: skip
ALL_COLUMNS = COLUMNS + NEW_COLUMNS
INT_COLUMNS = frozenset({
    "frame", "connection", "subflow", "seq", "ack", "payload_len", "dsn", "dsn64", "ssn", "data_len", "data_ack",
    "data_ack64", "data_fin", "checksum", "dsn_bits", "dsn_expanded", "dsn_relative", "data_ack_bits",
    "data_ack_expanded", "data_ack_relative",
})  # fmt: skip
REQUIRED_COLUMNS = frozenset({"frame", "time", "subflow", "direction", "tcp_flags", "seq", "ack", "payload_len",
                              "options"})  # fmt: skip
FLAG_LETTERS = "FSRPAUEC"
MASK64 = (1 << 64) - 1


def _flags(value: int) -> str:
    return "".join(letter for bit, letter in enumerate(FLAG_LETTERS) if value & (1 << bit))


class PacketExporter:
    """Pipeline observer writing one row per segment that carries MPTCP options."""

    def __init__(self, path: Path, fmt: str) -> None:
        if fmt not in ("csv", "parquet"):
            raise ValueError(f"unknown export format {fmt!r}")
        self.path = path
        self.fmt = fmt
        fd, tmp = tempfile.mkstemp(prefix="mptcp-analyze-", suffix=".csv", dir=path.parent or None)
        os.close(fd)
        self._tmp = Path(tmp)
        self._file: IO[str] = self._tmp.open("w", newline="")
        self._writer = csv.writer(self._file)
        self.packet = PacketLevels()  # the current segment's 64-bit values (analyzer.datalevels)
        self.rows = 0

    def attach_levels(self, packet: PacketLevels, level: object) -> None:
        self.packet = packet

    def on_segment(self, seg: Segment, sf: Subflow, direction: int) -> None:
        opts = seg.options
        if opts is None or not opts.mptcp:
            return
        names = []
        dss: Dss | None = None
        for opt in opts.mptcp:
            subtype = getattr(opt, "subtype", None)
            names.append(Subtype(subtype).name if isinstance(subtype, int) and subtype in Subtype._value2member_map_
                         else type(opt).__name__)  # fmt: skip
            if type(opt) is Dss:
                dss = opt
            elif type(opt) is MpCapable and opt.data_len is not None:
                names[-1] = "MP_CAPABLE+data"
        row: list[object] = [
            seg.frame, f"{seg.ts:.6f}", "", sf.id, direction, _flags(seg.flags), seg.seq, seg.ack,
            seg.payload_len, "|".join(names),
        ]  # fmt: skip
        if dss is not None:
            dsn64 = self.packet.known_dsn(dss)
            ack64 = self.packet.known_ack(dss)
            row += [
                "" if dss.dsn is None else dss.dsn, "" if dsn64 is None else dsn64, "" if dss.ssn is None else dss.ssn,
                "" if dss.data_len is None else dss.data_len, "" if dss.data_ack is None else dss.data_ack,
                int(dss.ack64) if dss.data_ack is not None else "", int(dss.data_fin),
                "" if dss.checksum is None else dss.checksum,
                "" if dss.dsn is None else (64 if dss.dsn64 else 32), "" if ack64 is None else ack64,
            ]  # fmt: skip
        else:
            row += [""] * 10
        self._writer.writerow(row)
        self.rows += 1

    def finish(self, analysis: Analysis) -> None:
        self._file.close()
        placement = {sf.id: (conn, int(sf.reversed)) for conn in analysis.connections for sf in conn.subflows}
        try:
            if self.fmt == "csv":
                self._write_csv(placement)
            else:
                self._write_parquet(placement)
        finally:
            self._tmp.unlink(missing_ok=True)

    def _rows(self, placement: dict[int, tuple[Connection, int]]):  # type: ignore[no-untyped-def]
        """The final rows: connection and its direction filled in, the expanded and relative columns added."""
        at = ALL_COLUMNS.index
        dsn_at, ack_at, flag_at = at("dsn64"), at("data_ack"), at("data_ack64")
        with self._tmp.open(newline="") as f:
            for row in csv.reader(f):
                conn, flip = placement.get(int(row[3]), (None, 0))
                side = int(row[4]) ^ flip
                row[2] = "" if conn is None else str(conn.id)
                row[4] = "c2s" if side == 0 else "s2c"
                ack64 = row.pop()
                dsn_bits = row.pop()
                sender_idsn = conn.sides[side].idsn if conn is not None else None
                peer_idsn = conn.sides[1 - side].idsn if conn is not None else None
                ack = row[ack_at]
                ack_bits = "" if ack == "" else (64 if row[flag_at] == "1" else 32)
                yield [*row, dsn_bits, *_value_and_relative(row[dsn_at], sender_idsn), ack_bits,
                       *_value_and_relative(ack64, peer_idsn)]  # fmt: skip

    def _write_csv(self, placement: dict[int, tuple[Connection, int]]) -> None:
        with self.path.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(ALL_COLUMNS)
            writer.writerows(self._rows(placement))

    def _write_parquet(self, placement: dict[int, tuple[Connection, int]]) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise RuntimeError("--parquet needs pyarrow: pip install 'mptcp-analyze[export]'") from exc
        ints = INT_COLUMNS
        fields = [
            pa.field(name, pa.uint64() if name in ints else (pa.float64() if name == "time" else pa.string()),
                     nullable=name not in REQUIRED_COLUMNS)
            for name in ALL_COLUMNS
        ]  # fmt: skip
        schema = pa.schema(fields, metadata={b"pandas": _pandas_metadata(pa.__version__)})
        with pq.ParquetWriter(str(self.path), schema) as writer:
            batch: list[list[str]] = []
            for row in self._rows(placement):
                batch.append(row)
                if len(batch) >= 65536:
                    writer.write_table(_table(batch, schema, ints))
                    batch = []
            if batch:
                writer.write_table(_table(batch, schema, ints))


def _table(rows: list[list[str]], schema, ints: frozenset[str]):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    columns: list[Sequence[object]] = []
    for index, name in enumerate(ALL_COLUMNS):
        values = [row[index] for row in rows]
        if name in ints:
            columns.append([int(v) if v != "" else None for v in values])
        elif name == "time":
            columns.append([float(v) for v in values])
        else:
            columns.append(values)
    return pa.table(columns, schema=schema)


def _pandas_metadata(pyarrow_version: str) -> bytes:
    """Tell pandas.read_parquet to read nullable 64-bit columns as UInt64 (exact, <NA> where absent).

    Without it pandas turns an unsigned column with nulls into float64, and a 64-bit DSN loses its low bits.
    """
    columns = [
        {
            "name": name,
            "field_name": name,
            "pandas_type": "uint64" if name in INT_COLUMNS else ("float64" if name == "time" else "unicode"),
            "numpy_type": ("uint64" if name in REQUIRED_COLUMNS else "UInt64")
            if name in INT_COLUMNS
            else ("float64" if name == "time" else "object"),
            "metadata": None,
        }
        for name in ALL_COLUMNS
    ]
    meta = {
        "index_columns": [],
        "column_indexes": [],
        "columns": columns,
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pyarrow_version},
        "pandas_version": "2.0.0",
    }
    return json.dumps(meta).encode()


def _value_and_relative(text: str, idsn: int | None) -> list[object]:
    """A 64-bit value (as written in the first step; empty: unknown) and the same relative to ``idsn``."""
    if text == "":
        return ["", ""]
    value = int(text)
    return [value, "" if idsn is None else (value - idsn) & MASK64]
