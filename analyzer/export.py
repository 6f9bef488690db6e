"""Per-packet export of MPTCP data for pandas/polars users (``--csv`` / ``--parquet``).

Rows stream to a temporary CSV during the single pass (memory stays flat); connection numbers and
connection-level directions are only final at the end, so the rows are then rewritten once with
them filled in — as CSV, or as Parquet through pyarrow, batch by batch.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from analyzer.ingest.decode import Segment
from analyzer.model import Analysis, Subflow
from analyzer.mptcp.options import Dss, MpCapable, Subtype
from analyzer.seqnum import expand32

COLUMNS = (
    "frame", "time", "connection", "subflow", "direction", "tcp_flags", "seq", "ack", "payload_len",
    "options", "dsn", "dsn64", "ssn", "data_len", "data_ack", "data_ack64", "data_fin", "checksum",
)  # fmt: skip
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
            ]  # fmt: skip
        else:
            row += [""] * 8
        self._writer.writerow(row)
        self.rows += 1

    def finish(self, analysis: Analysis) -> None:
        self._file.close()
        placement = {sf.id: (conn.id, int(sf.reversed)) for conn in analysis.connections for sf in conn.subflows}
        try:
            if self.fmt == "csv":
                self._write_csv(placement)
            else:
                self._write_parquet(placement)
        finally:
            self._tmp.unlink(missing_ok=True)

    def _rows(self, placement: dict[int, tuple[int, int]]):  # type: ignore[no-untyped-def]
        with self._tmp.open(newline="") as f:
            for row in csv.reader(f):
                conn, flip = placement.get(int(row[3]), ("", 0))
                row[2] = str(conn)
                row[4] = "c2s" if int(row[4]) ^ flip == 0 else "s2c"
                yield row

    def _write_csv(self, placement: dict[int, tuple[int, int]]) -> None:
        with self.path.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(COLUMNS)
            writer.writerows(self._rows(placement))

    def _write_parquet(self, placement: dict[int, tuple[int, int]]) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise RuntimeError("--parquet needs pyarrow: pip install 'mptcp-analyze[export]'") from exc
        ints = {"frame", "connection", "subflow", "seq", "ack", "payload_len", "dsn", "dsn64", "ssn", "data_len",
                "data_ack", "data_ack64", "data_fin", "checksum"}  # fmt: skip
        schema = pa.schema(
            [(name, pa.uint64() if name in ints else (pa.float64() if name == "time" else pa.string()))
             for name in COLUMNS]
        )  # fmt: skip
        with pq.ParquetWriter(str(self.path), schema) as writer:
            batch: list[list[str]] = []
            for row in self._rows(placement):
                batch.append(row)
                if len(batch) >= 65536:
                    writer.write_table(_table(batch, schema, ints))
                    batch = []
            if batch:
                writer.write_table(_table(batch, schema, ints))


def _table(rows: list[list[str]], schema, ints: set[str]):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    columns: list[Sequence[object]] = []
    for index, name in enumerate(COLUMNS):
        values = [row[index] for row in rows]
        if name in ints:
            columns.append([int(v) if v != "" else None for v in values])
        elif name == "time":
            columns.append([float(v) for v in values])
        else:
            columns.append(values)
    return pa.table(columns, schema=schema)
