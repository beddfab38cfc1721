"""Reading one HTTP/1.x response off a stream: status, whether to close, and the body discarded."""

from __future__ import annotations

import asyncio

from ambit.apps.load.outcomes import CLOSED, PROTOCOL_ERROR, SHORT_READ, RequestFailed

MAX_HEAD_LINE = 64 * 1024
_MAX_HEADERS = 200


async def read_response(reader: asyncio.StreamReader, *, head: bool = False) -> tuple[int, bool]:
    """Read one HTTP/1.x response (discarding the body): (status, whether the connection must close).

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
        if "chunked" in headers.get("transfer-encoding", "").lower():
            await _chunked(reader)
        elif "content-length" in headers:
            await _discard(reader, _content_length(headers["content-length"]))
        else:
            while await reader.read(65536):
                pass
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


async def _discard(reader: asyncio.StreamReader, size: int) -> None:
    while size > 0:
        size -= len(await reader.readexactly(min(size, 65536)))


async def _chunked(reader: asyncio.StreamReader) -> None:
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
        await _discard(reader, size + 2)
