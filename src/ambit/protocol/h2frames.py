"""Raw HTTP/2 frame headers for the HBONE fast path (RFC 9113 §4.1, §6.1, §6.9).

Tunnel bytes are almost all DATA frames, and the peer's credit comes back in WINDOW_UPDATE frames.
Going through h2's state machine for those costs 10-30× more than packing or parsing the 9-byte
header directly (performance-notes §5.2), so the HBONE core handles exactly these two frame types
itself and hands every other frame to h2. This module only knows the wire layout; what a frame
means for a stream (windows, states) is `protocol.h2fastpath`'s business.
"""

from __future__ import annotations

import struct

FRAME_HEADER_SIZE = 9
PREFACE_SIZE = 24  # b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", sent by the client before its first frame

DATA = 0x0
WINDOW_UPDATE = 0x8

END_STREAM = 0x1
PADDED = 0x8

MAX_WINDOW = 2**31 - 1

# 24-bit length as one byte + 16 bits, type, flags, reserved bit + 31-bit stream id.
_HEADER = struct.Struct(">BHBBL")
_WINDOW_UPDATE = struct.Struct(">BHBBLL")


def parse_header(buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int, int, int]:
    """(length, type, flags, stream id) of the frame header at `offset` (9 bytes must be there)."""
    hi, lo, ftype, flags, sid = _HEADER.unpack_from(buf, offset)
    return (hi << 16) | lo, ftype, flags, sid & 0x7FFF_FFFF


def data_header(stream_id: int, length: int, flags: int = 0) -> bytes:
    """The header of a DATA frame carrying `length` payload bytes."""
    return _HEADER.pack(length >> 16, length & 0xFFFF, DATA, flags, stream_id)


def window_update(stream_id: int, increment: int) -> bytes:
    """A complete WINDOW_UPDATE frame (stream 0 is the connection)."""
    return _WINDOW_UPDATE.pack(0, 4, WINDOW_UPDATE, 0, stream_id, increment)


def window_increment(payload: bytes | bytearray | memoryview, offset: int) -> int:
    """The 31-bit increment of a WINDOW_UPDATE payload at `offset` (4 bytes must be there)."""
    value: int = struct.unpack_from(">L", payload, offset)[0]
    return value & 0x7FFF_FFFF
