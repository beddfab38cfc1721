"""Reading one HTTP/1.x response off a stream: status, whether to close, and the body discarded (or kept)."""

from __future__ import annotations

import asyncio

from ambit.apps.load.outcomes import CLOSED, PROTOCOL_ERROR, SHORT_READ, RequestFailed

MAX_HEAD_LINE = 64 * 1024
MAX_KEPT_BODY = 64 * 1024  # bytes of a body kept for the caller (`read_response`'s ``body``)
_MAX_HEADERS = 200


async def read_response(
    reader: asyncio.StreamReader, *, head: bool = False, body: bytearray | None = None
) -> tuple[int, bool]:
    """Read one HTTP/1.x response: (status, whether the connection must close).

    The body is discarded, or with `body`, a 2xx answer's body is appended to it (its first
    `MAX_KEPT_BODY` bytes; the rest is discarded): the framing is the same either way.

    Raises RequestFailed: ``closed`` (EOF before the first byte), ``short_read`` (EOF later),
    ``protocol_error`` (not HTTP/1.x, bad framing, a line over 64 KiB).
    """
    got_any = False
    try:
        while True:
            line = await reader.readuntil(b"\r\n")
            got_any = True
            version, status = _status_line(line)
            headers = await _headers(reader)
            if 100 <= status <= 199:
                continue  # interim response: the final one follows
            break
        connection = headers.get("connection", "").lower()
        close = "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
        if head or status in (204, 304):
            return status, close
        sink = body if body is not None and 200 <= status <= 299 else None
        if "chunked" in headers.get("transfer-encoding", "").lower():
            await _chunked(reader, sink)
        elif "content-length" in headers:
            await _discard(reader, _content_length(headers["content-length"]), sink)
        else:
            while chunk := await reader.read(65536):
                if sink is not None:
                    _keep(sink, chunk)
            close = True
        return status, close
    except asyncio.IncompleteReadError as exc:
        if got_any or exc.partial:
            raise RequestFailed(SHORT_READ, "EOF in the middle of the response") from None
        raise RequestFailed(CLOSED, "EOF before the response") from None
    except asyncio.LimitOverrunError:
        raise RequestFailed(PROTOCOL_ERROR, "response line longer than 64 KiB") from None


def _status_line(line: bytes) -> tuple[str, int]:
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or parts[0] not in ("HTTP/1.1", "HTTP/1.0") or not parts[1].isdigit():
        raise RequestFailed(PROTOCOL_ERROR, f"bad status line {line[:60]!r}")
    return parts[0], int(parts[1])


async def _headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADERS):
        line = await reader.readuntil(b"\r\n")
        if line == b"\r\n":
            return headers
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise RequestFailed(PROTOCOL_ERROR, f"bad header line {line[:60]!r}")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    raise RequestFailed(PROTOCOL_ERROR, f"more than {_MAX_HEADERS} headers")


def _content_length(text: str) -> int:
    values = {v.strip() for v in text.split(",")}
    if len(values) != 1 or not (value := values.pop()).isdigit():
        raise RequestFailed(PROTOCOL_ERROR, f"bad Content-Length {text!r}")
    return int(value)


def _keep(sink: bytearray, data: bytes) -> None:
    room = MAX_KEPT_BODY - len(sink)
    if room > 0:
        sink += data[:room]


async def _discard(reader: asyncio.StreamReader, size: int, sink: bytearray | None = None) -> None:
    while size > 0:
        data = await reader.readexactly(min(size, 65536))
        size -= len(data)
        if sink is not None:
            _keep(sink, data)


async def _chunked(reader: asyncio.StreamReader, sink: bytearray | None = None) -> None:
    while True:
        line = await reader.readuntil(b"\r\n")
        text = line.split(b";", 1)[0].strip()
        try:
            size = int(text, 16)
        except ValueError:
            raise RequestFailed(PROTOCOL_ERROR, f"bad chunk size {line[:40]!r}") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers
            return
        if sink is None:
            await _discard(reader, size + 2)
        else:
            await _discard(reader, size, sink)
            await reader.readexactly(2)  # the chunk's CRLF
