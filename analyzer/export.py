"""Per-packet export of MPTCP data for pandas/polars users (``--csv`` / ``--parquet``).

Rows stream to a temporary CSV during the single pass (memory stays flat); connection numbers and
connection-level directions are only final at the end, so the rows are then rewritten once with
them filled in — as CSV, or as Parquet through pyarrow, batch by batch. The IDSNs are known then too,
so the 64-bit and IDSN-relative DSN and Data ACK columns are computed in that second step.
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

from analyzer.ingest.decode import Segment
from analyzer.model import Analysis, Connection, Subflow
from analyzer.mptcp.options import Dss, MpCapable, Subtype
from analyzer.seqnum import expand32

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
        self._dsn_refs: dict[int, int] = {}  # subflow id * 2 + direction -> last 64-bit DSN
        self.rows = 0

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
            key = sf.id * 2 + direction
            dsn64: int | str = ""
            if dss.dsn is not None:
                if dss.dsn64:
                    dsn64 = dss.dsn
                elif key in self._dsn_refs:
                    dsn64 = expand32(dss.dsn, self._dsn_refs[key])
                if isinstance(dsn64, int):
                    self._dsn_refs[key] = (dsn64 + (dss.data_len or 0)) & MASK64
            row += [
                "" if dss.dsn is None else dss.dsn, dsn64, "" if dss.ssn is None else dss.ssn,
                "" if dss.data_len is None else dss.data_len, "" if dss.data_ack is None else dss.data_ack,
                int(dss.ack64) if dss.data_ack is not None else "", int(dss.data_fin),
                "" if dss.checksum is None else dss.checksum,
                "" if dss.dsn is None else (64 if dss.dsn64 else 32),
            ]  # fmt: skip
        else:
            row += [""] * 9
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
        expander = _Expander()
        with self._tmp.open(newline="") as f:
            for row in csv.reader(f):
                conn, flip = placement.get(int(row[3]), (None, 0))
                side = int(row[4]) ^ flip
                row[2] = "" if conn is None else str(conn.id)
                row[4] = "c2s" if side == 0 else "s2c"
                dsn_bits = row.pop()
                yield row + expander.columns(conn, side, row, dsn_bits)

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


class _Expander:
    """Expands DSNs and Data ACKs to 64 bits per connection side: from the last value, else from the IDSN."""

    def __init__(self) -> None:
        self.refs: dict[tuple[str, int, str], int] = {}

    def columns(self, conn: Connection | None, side: int, row: list[str], dsn_bits: str) -> list[object]:
        at = ALL_COLUMNS.index
        dsn, data_len, ack, ack_flag = row[at("dsn")], row[at("data_len")], row[at("data_ack")], row[at("data_ack64")]
        owner = row[at("connection")] or f"sf{row[at('subflow')]}"
        sender_idsn = conn.sides[side].idsn if conn is not None else None
        peer_idsn = conn.sides[1 - side].idsn if conn is not None else None
        full = self._expand((owner, side, "dsn"), dsn, dsn_bits == "64", sender_idsn)
        if full is not None and data_len:
            self.refs[(owner, side, "dsn")] = (full + int(data_len)) & MASK64
        acked = self._expand((owner, side, "ack"), ack, ack_flag == "1", peer_idsn)
        ack_bits = "" if ack == "" else (64 if ack_flag == "1" else 32)
        return [dsn_bits, *_value_and_relative(full, sender_idsn), ack_bits, *_value_and_relative(acked, peer_idsn)]

    def _expand(self, key: tuple[str, int, str], raw: str, wide: bool, idsn: int | None) -> int | None:
        if raw == "":
            return None
        value = int(raw)
        if not wide:
            reference = self.refs.get(key)
            if reference is None and idsn is not None:
                reference = (idsn + 1) & MASK64
            if reference is None:
                return None
            value = expand32(value, reference)
        self.refs[key] = value
        return value


def _value_and_relative(value: int | None, idsn: int | None) -> list[object]:
    if value is None:
        return ["", ""]
    return [value, "" if idsn is None else (value - idsn) & MASK64]
