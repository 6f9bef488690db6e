# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled twin of the per-packet hot path: pcap record loop, link → IP → TCP decode, option walk.

Why: every packet of a multi-million-packet trace passes through these steps, and in pure Python
they cost most of the time an analysis without rules takes. This module returns exactly the
objects the pure path returns (the same ``Segment``, ``TcpOptions``, ``Dss`` and ``Skip`` values),
so everything downstream is unchanged. The pure-Python modules stay the reference: anything out
of the ordinary (a malformed or truncated option list, a TFO option, an MPTCP option other than a
well-formed DSS, BSD loopback framing) is handed to them, so edge-case semantics live in one place.
``tests/test_speedups.py`` checks both paths give the same results.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.object cimport PyObject_GenericSetAttr
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_SET_ITEM
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from analyzer.ingest.decode import Skip, decode_segment_pure, network_offset
from analyzer.ingest.segment import Segment
from analyzer.mptcp.options import Dss, parse_option
from analyzer.tcp_options import TcpOptions, walk_tcp_options

cdef object SKIP_UNSUPPORTED_LINK = Skip.UNSUPPORTED_LINK
cdef object SKIP_NOT_IP = Skip.NOT_IP
cdef object SKIP_NOT_TCP = Skip.NOT_TCP
cdef object SKIP_FRAGMENT = Skip.FRAGMENT
cdef object SKIP_TRUNCATED = Skip.TRUNCATED_HEADER
cdef object SKIP_BAD_IP = Skip.BAD_IP_HEADER
cdef object SKIP_BAD_TCP = Skip.BAD_TCP_HEADER
cdef object _Segment = Segment
cdef object _Dss = Dss
cdef object _TcpOptions = TcpOptions
cdef object _new = object.__new__

cdef enum:
    TH_SYN = 0x02
    IPPROTO_TCP = 6
    KIND_EOL = 0
    KIND_NOP = 1
    KIND_MSS = 2
    KIND_WSCALE = 3
    KIND_SACK_PERMITTED = 4
    KIND_SACK = 5
    KIND_TIMESTAMP = 8
    KIND_MPTCP = 30
    SUBTYPE_DSS = 2
    MAX_VLAN_TAGS = 4
    MAX_IPV6_HEADERS = 12


cdef extern from "Python.h":
    object PyType_GenericAlloc(type subtype, Py_ssize_t nitems)


cdef inline object make_record(type record, object frame, object offset, object ts, object link_type,
                               object data, object origlen):
    """A ``Record`` (a tuple subclass) filled in C: ``tuple.__new__(Record, ...)`` costs more than the
    rest of the loop's work per packet (it builds and copies an argument tuple)."""
    rec = PyType_GenericAlloc(record, 6)
    Py_INCREF(frame)
    PyTuple_SET_ITEM(rec, 0, frame)
    Py_INCREF(offset)
    PyTuple_SET_ITEM(rec, 1, offset)
    Py_INCREF(ts)
    PyTuple_SET_ITEM(rec, 2, ts)
    Py_INCREF(link_type)
    PyTuple_SET_ITEM(rec, 3, link_type)
    Py_INCREF(data)
    PyTuple_SET_ITEM(rec, 4, data)
    Py_INCREF(origlen)
    PyTuple_SET_ITEM(rec, 5, origlen)
    return rec


cdef inline uint16_t be16(const uint8_t* p) noexcept nogil:
    return (<uint16_t>p[0] << 8) | p[1]


cdef inline uint32_t be32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint64_t be64(const uint8_t* p) noexcept nogil:
    return (<uint64_t>be32(p) << 32) | be32(p + 4)


cdef inline uint32_t le32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[3] << 24) | (<uint32_t>p[2] << 16) | (<uint32_t>p[1] << 8) | p[0]


cdef inline bint is_vlan(uint16_t t) noexcept nogil:
    return t == 0x8100 or t == 0x88A8 or t == 0x9100 or t == 0x9200


cdef inline bint is_v6_ext(uint8_t t) noexcept nogil:
    return t == 0 or t == 43 or t == 60 or t == 135 or t == 139 or t == 140


cdef inline int by_ethertype(uint16_t ethertype, int offset, int* version) noexcept nogil:
    """IP header offset for an ethertype, -2 (not IP), or -4: MPLS, PPPoE, bridged Ethernet (tunnels.py)."""
    if ethertype == 0x0800:
        version[0] = 4
        return offset
    if ethertype == 0x86DD:
        version[0] = 6
        return offset
    if ethertype == 0x8847 or ethertype == 0x8848 or ethertype == 0x8864 or ethertype == 0x6558:
        return -4
    return -2


cdef inline bint is_tunnel(uint8_t protocol) noexcept nogil:
    """IP-in-IP, IPv6-in-IP, GRE, UDP (VXLAN, Geneve): the reference decoder follows them (tunnels.py)."""
    return protocol == 4 or protocol == 41 or protocol == 47 or protocol == 17


cdef int link_offset(int link_type, const uint8_t* p, Py_ssize_t n, int* version) noexcept nogil:
    """IP header offset; -1 truncated, -2 not IP, -3 unsupported link, -4 ask the pure path."""
    cdef int offset, i
    cdef uint16_t ethertype
    if link_type == 1:  # Ethernet (+ 802.1Q / QinQ)
        offset = 12
        for i in range(MAX_VLAN_TAGS + 1):
            if n < offset + 2:
                return -1
            ethertype = be16(p + offset)
            if is_vlan(ethertype):
                offset += 4
                continue
            return by_ethertype(ethertype, offset + 2, version)
        return -2
    if link_type == 276:  # Linux SLL2
        if n < 20:
            return -1
        return by_ethertype(be16(p), 20, version)
    if link_type == 113:  # Linux SLL
        if n < 16:
            return -1
        return by_ethertype(be16(p + 14), 16, version)
    if link_type == 101 or link_type == 12 or link_type == 14 or link_type == 228 or link_type == 229:
        if n < 1:
            return -1
        version[0] = p[0] >> 4
        return 0 if version[0] == 4 or version[0] == 6 else -2
    if link_type == 0 or link_type == 108:
        return -4  # BSD loopback: host byte order games, rare; the pure path decides
    if link_type == 9 or link_type == 50 or link_type == 51 or link_type == 104:
        return -4  # PPP, PPP in HDLC framing, PPPoE, Cisco HDLC: the pure path decides
    if link_type == 117 or link_type == 226 or link_type == 239:
        return -4  # pflog, IPNET, NFLOG: capture-point headers, rare; the pure path decides
    return -3


def decode_segment(frame, ts, int link_type, data):
    """Decode one captured frame into a ``Segment``, or say why it is not one (see decode.py)."""
    if type(data) is not bytes:
        return decode_segment_pure(frame, ts, link_type, data)  # bytearray, memoryview: rare
    return _decode(frame, ts, link_type, <bytes>data)


cdef object _decode(object frame, object ts, int link_type, bytes data):
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef int version = 0
    cdef int off = link_offset(link_type, p, n, &version)
    cdef int ihl, tcp, ip_end, hlen, i, hdr_len, payload_offset, payload_len, total_len, plen, captured
    cdef uint8_t nxt, flags
    cdef object src, dst, options, net
    if off < 0:
        if off == -1:
            return SKIP_TRUNCATED
        if off == -2:
            return SKIP_NOT_IP
        if off == -3:
            return SKIP_UNSUPPORTED_LINK
        net = network_offset(link_type, data)
        if isinstance(net, Skip):
            return net
        off, version = net
    if version == 4:
        if n < off + 20:
            return SKIP_TRUNCATED
        if p[off] >> 4 != 4:
            return SKIP_BAD_IP
        ihl = (p[off] & 0x0F) * 4
        if ihl < 20:
            return SKIP_BAD_IP
        if be16(p + off + 6) & 0x3FFF:
            return SKIP_FRAGMENT
        if p[off + 9] != IPPROTO_TCP:
            if is_tunnel(p[off + 9]):
                return decode_segment_pure(frame, ts, link_type, data)  # encapsulated: the reference follows it
            return SKIP_NOT_TCP
        total_len = be16(p + off + 2)
        src = data[off + 12 : off + 16]
        dst = data[off + 16 : off + 20]
        tcp = off + ihl
        ip_end = off + total_len if total_len >= ihl else <int>n
    else:
        if n < off + 40:
            return SKIP_TRUNCATED
        if p[off] >> 4 != 6:
            return SKIP_BAD_IP
        plen = be16(p + off + 4)
        nxt = p[off + 6]
        src = data[off + 8 : off + 24]
        dst = data[off + 24 : off + 40]
        tcp = off + 40
        ip_end = tcp + plen if plen else <int>n
        for i in range(MAX_IPV6_HEADERS + 1):
            if i == MAX_IPV6_HEADERS:
                return SKIP_BAD_IP
            if nxt == IPPROTO_TCP:
                break
            if is_v6_ext(nxt):
                if n < tcp + 2:
                    return SKIP_TRUNCATED
                hlen = (p[tcp + 1] + 1) * 8
                nxt = p[tcp]
            elif nxt == 44:
                return SKIP_FRAGMENT
            elif nxt == 51:
                if n < tcp + 2:
                    return SKIP_TRUNCATED
                hlen = (p[tcp + 1] + 2) * 4
                nxt = p[tcp]
            elif is_tunnel(nxt):
                return decode_segment_pure(frame, ts, link_type, data)  # encapsulated: the reference follows it
            else:
                return SKIP_NOT_TCP
            tcp += hlen
    if n < tcp + 20:
        return SKIP_TRUNCATED
    hdr_len = (p[tcp + 12] >> 4) * 4
    if hdr_len < 20 or tcp + hdr_len > ip_end:
        return SKIP_BAD_TCP
    flags = p[tcp + 13]
    payload_offset = tcp + hdr_len
    payload_len = ip_end - payload_offset
    options = None
    if hdr_len > 20:
        # Walk when the options may hold MPTCP, and when the capture cut them (as the pure path).
        if flags & TH_SYN or n < payload_offset or has_kind(p, tcp + 20, payload_offset, n, KIND_MPTCP):
            options = walk_options(data, p, n, tcp + 20, payload_offset)
    seg = _new(_Segment)
    seg.frame = frame
    seg.ts = ts
    seg.ip_version = version
    seg.src = src
    seg.dst = dst
    seg.sport = be16(p + tcp)
    seg.dport = be16(p + tcp + 2)
    seg.seq = be32(p + tcp + 4)
    seg.ack = be32(p + tcp + 8)
    seg.flags = flags
    seg.window = be16(p + tcp + 14)
    seg.payload_len = payload_len
    seg.payload_offset = payload_offset
    captured = <int>n - payload_offset
    seg.captured_payload_len = payload_len if captured >= payload_len else (captured if captured > 0 else 0)
    seg.data = data
    seg.options = options
    return seg


cdef inline bint has_kind(const uint8_t* p, int start, int end, Py_ssize_t n, uint8_t kind) noexcept nogil:
    cdef int i
    if end > n:
        end = <int>n
    for i in range(start, end):
        if p[i] == kind:
            return True
    return False


cdef object walk_options(bytes data, const uint8_t* p, Py_ssize_t n, int start, int end):
    """The common, well-formed option list in C; anything unusual goes to ``walk_tcp_options``."""
    cdef int limit = end if end < n else <int>n
    cdef int i = start, length, nxt, k
    cdef uint8_t kind
    cdef object out = _TcpOptions()
    cdef list mptcp = out.mptcp
    cdef object opt
    while i < end:
        if i >= limit:
            return walk_tcp_options(data, start, end, limit)  # truncated: the reference decides
        kind = p[i]
        if kind == KIND_EOL:
            break
        if kind == KIND_NOP:
            i += 1
            continue
        if i + 1 >= limit:
            return walk_tcp_options(data, start, end, limit)
        length = p[i + 1]
        nxt = i + length
        if length < 2 or nxt > limit:
            return walk_tcp_options(data, start, end, limit)  # malformed or truncated
        if kind == KIND_MPTCP:
            opt = None
            if length >= 4 and p[i + 2] >> 4 == SUBTYPE_DSS:
                opt = fast_dss(p + i, length)
            if opt is None:
                opt = parse_option(data[i:nxt])
            mptcp.append(opt)
        elif kind == KIND_TIMESTAMP:
            if length == 10:
                out.timestamp = (be32(p + i + 2), be32(p + i + 6))
        elif kind == KIND_MSS:
            if length == 4:
                out.mss = be16(p + i + 2)
        elif kind == KIND_WSCALE:
            if length == 3:
                out.wscale = p[i + 2]
        elif kind == KIND_SACK_PERMITTED:
            if length == 2:
                out.sack_permitted = True
        elif kind == KIND_SACK:
            if length >= 10 and (length - 2) % 8 == 0:
                out.sack_blocks = tuple([
                    (be32(p + k), be32(p + k + 4)) for k in range(i + 2, nxt, 8)
                ])
        elif kind == 34:  # TFO: rare, the reference decodes it
            return walk_tcp_options(data, start, end, limit)
        i = nxt
    return out


cdef object fast_dss(const uint8_t* p, int n):
    """A well-formed DSS as ``_dss_trusted`` builds it; None when the length does not fit the flags."""
    cdef uint8_t flags = p[3]
    cdef int expected = 4, pos = 4
    cdef object data_ack = None, dsn = None, ssn = None, data_len = None, checksum = None
    if flags & 0x01:
        expected += 8 if flags & 0x02 else 4
    if flags & 0x04:
        expected += (8 if flags & 0x08 else 4) + 6
    if n != expected and not (flags & 0x04 and n == expected + 2):
        return None  # malformed: the codec words the reason
    if flags & 0x01:
        if flags & 0x02:
            data_ack = be64(p + pos)
            pos += 8
        else:
            data_ack = be32(p + pos)
            pos += 4
    if flags & 0x04:
        if flags & 0x08:
            dsn = be64(p + pos)
            pos += 8
        else:
            dsn = be32(p + pos)
            pos += 4
        ssn = be32(p + pos)
        data_len = be16(p + pos + 4)
        if n == expected + 2:
            checksum = be16(p + pos + 6)
    dss = _new(_Dss)
    PyObject_GenericSetAttr(dss, "flags", flags)
    PyObject_GenericSetAttr(dss, "data_ack", data_ack)
    PyObject_GenericSetAttr(dss, "dsn", dsn)
    PyObject_GenericSetAttr(dss, "ssn", ssn)
    PyObject_GenericSetAttr(dss, "data_len", data_len)
    PyObject_GenericSetAttr(dss, "checksum", checksum)
    PyObject_GenericSetAttr(dss, "reserved", p[2] & 0x0F)
    return dss


def pcap_records(stream, info, bint little, double divisor, int link_type, long max_record,
                 str limit_note="", record=None, Py_ssize_t chunk=1 << 20):
    """Yield ``Record(frame, offset, ts, link_type, data, origlen)`` like ``capture._pcap_records``.

    Starts after the file header. Reads the file in large chunks instead of two ``read`` calls per
    record; the records (offsets included) and the messages for a damaged file are the reference's,
    word for word. ``record`` is the record type (``analyzer.ingest.record.Record``).
    """
    read = stream.read
    if record is None:
        from analyzer.ingest.record import Record as record
    cdef bytes buf = b""
    cdef Py_ssize_t pos = 0, have
    cdef long offset = 24
    cdef long start
    cdef long frame = 0
    cdef uint32_t sec, frac, caplen, origlen
    cdef const uint8_t* h
    cdef bytes more
    while True:
        have = PyBytes_GET_SIZE(buf) - pos
        if have < 16:
            buf = buf[pos:]
            pos = 0
            while PyBytes_GET_SIZE(buf) < 16:
                more = read(chunk)
                if not more:
                    break
                buf += more
            have = PyBytes_GET_SIZE(buf)
            if have < 16:
                if have:
                    info.errors.append(f"truncated record header at end of file (offset {offset})")
                return
        h = <const uint8_t*>PyBytes_AS_STRING(buf) + pos
        if little:
            sec, frac, caplen, origlen = le32(h), le32(h + 4), le32(h + 8), le32(h + 12)
        else:
            sec, frac, caplen, origlen = be32(h), be32(h + 4), be32(h + 8), be32(h + 12)
        if caplen > max_record:
            info.errors.append(
                f"corrupt record header at offset {offset} (captured length {caplen}); stopped reading{limit_note}")
            return
        if have < 16 + <Py_ssize_t>caplen:
            buf = buf[pos:]
            pos = 0
            while PyBytes_GET_SIZE(buf) < 16 + <Py_ssize_t>caplen:
                more = read(chunk)
                if not more:
                    break
                buf += more
            if PyBytes_GET_SIZE(buf) < 16 + <Py_ssize_t>caplen:
                offset += 16 + caplen
                info.bytes_read = offset
                info.errors.append(
                    f"last record truncated: {PyBytes_GET_SIZE(buf) - 16} of {caplen} bytes present (file cut short)"
                )
                return
        data = buf[pos + 16 : pos + 16 + caplen]
        pos += 16 + caplen
        start = offset
        offset += 16 + caplen
        info.bytes_read = offset
        frame += 1
        yield make_record(record, frame, start, sec + frac / divisor, link_type, data, origlen)
