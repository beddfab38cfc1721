"""The waypoint's HTTP/2 frontend (h2c with prior knowledge, gRPC included), on the exchange model.

:func:`serve_h2` serves one client connection: each request stream becomes a :class:`Request` whose
body is fed as DATA arrives, the handler runs in a task of its own (streams are concurrent, and a
request body keeps flowing while the handler runs: gRPC bidi streaming is full duplex), and its
:class:`Response` goes back as HEADERS, DATA as the body yields, then trailers or END_STREAM. The
connection machinery it shares with the upstream pool is :mod:`ambit.waypoint.h2_link`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes

from ambit.net.drain import Drain
from ambit.net.duplex import Duplex, StreamAborted
from ambit.net.tasks import spawn
from ambit.waypoint.exchange import (
    BodyError,
    Downstream,
    Headers,
    Request,
    RequestHandler,
    Response,
    local_response,
)
from ambit.waypoint.h2_link import (
    CLOSE_GRACE,
    MAX_CONCURRENT_STREAMS,
    MAX_HEADER_LIST_SIZE,
    STREAM_WINDOW,
    H2Link,
    InboundBody,
    LinkStream,
    MalformedRequest,
    StreamGone,
    as_bytes_fields,
    request_head,
    response_fields,
    take_if_complete,
    trailer_fields,
)

_log = logging.getLogger(__name__)


class _ServerStream(LinkStream):
    __slots__ = ("body", "task", "trailers")

    def __init__(self, sid: int, body: InboundBody) -> None:
        super().__init__(sid)
        self.body = body
        self.trailers: Headers = []
        self.task: asyncio.Task[None] | None = None


class _H2Server(H2Link):
    def __init__(self, stream: Duplex, downstream: Downstream, handler: RequestHandler) -> None:
        super().__init__(
            stream,
            client_side=False,
            settings={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            },
        )
        self.downstream = downstream
        self.handler = handler
        self.streams: dict[int, _ServerStream] = {}
        self.goaway_sent: int | None = None  # the last stream id our GOAWAY let in
        self.peer_leaving = False  # the client sent GOAWAY
        self.read_over = False
        self.finished = asyncio.Event()

    def describe(self) -> str:
        return f"client {self.downstream.peer_ip} ({self.downstream.peer_identity})"

    async def serve(self, initial: bytes, drain: Drain | None) -> None:
        self.start()
        reader = spawn(self.read_loop(initial), name="h2-server-read")
        watcher = spawn(self._watch(drain), name="h2-server-drain") if drain is not None else None
        cancelled = False
        try:
            await self.finished.wait()
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            reader.cancel()
            if watcher is not None:
                watcher.cancel()
            tasks = [st.task for st in self.streams.values() if st.task is not None]
            for task in tasks:
                task.cancel()
            try:
                await asyncio.gather(reader, *([watcher] if watcher else []), *tasks, return_exceptions=True)
            except asyncio.CancelledError:
                cancelled = True
                raise
            finally:
                if cancelled:  # stopped from outside: no grace, reset the connection
                    self.flush()
                    if not self.stream.closed:
                        self.stream.abort(StreamAborted("HTTP/2 server stopped"))
                else:
                    await self._close()

    async def _watch(self, drain: Drain) -> None:
        await drain.wait()
        self.goaway()
        await asyncio.sleep(drain.remaining())
        for st in list(self.streams.values()):  # past the deadline: what is still in flight is cut
            if st.task is not None:
                st.task.cancel()

    def goaway(self) -> None:
        """Graceful GOAWAY: streams opened so far finish, later ones are refused; then we close."""
        if self.goaway_sent is not None or self.broken is not None:
            return
        last = self.h2.highest_inbound_stream_id
        self.goaway_sent = last
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.close_connection(ErrorCodes.NO_ERROR, last_stream_id=last)
        self.flush()
        self._check_done()

    async def _close(self) -> None:
        """FIN after our last frame, then give the client CLOSE_GRACE to close; reset if it does not."""
        self.flush()
        stream = self.stream
        if stream.closed:
            return
        if self.broken is not None and not isinstance(self.broken, h2.exceptions.ProtocolError):
            stream.abort(StreamAborted("HTTP/2 connection broken"))
            return
        try:
            if not stream.eof_out:
                stream.write_eof()
            async with asyncio.timeout(CLOSE_GRACE):
                await stream.wait_closed()
        except (TimeoutError, StreamAborted, OSError):
            pass
        finally:  # also when cancelled while waiting
            if not stream.closed:
                stream.abort(StreamAborted("HTTP/2 client did not close"))

    def _check_done(self) -> None:
        over = self.broken is not None or self.goaway_sent is not None or self.read_over or self.peer_leaving
        if over and not self.streams:
            self.finished.set()

    # -- events ----------------------------------------------------------------------------------------

    def body_for(self, sid: int) -> InboundBody | None:
        st = self.streams.get(sid)
        return st.body if st is not None else None

    def handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._request(event)
        elif isinstance(event, h2.events.TrailersReceived):
            st = self.streams.get(event.stream_id)
            if st is not None:
                st.trailers = as_bytes_fields(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            st = self.streams.get(event.stream_id)
            if st is not None:
                st.remote_done = True
                st.body.finish(st.trailers)
        elif isinstance(event, h2.events.StreamReset):
            st = self.streams.get(event.stream_id)
            if st is not None:
                st.reset = True
                st.body.fail(BodyError(f"client reset the stream ({_code(event.error_code)})"))
                if st.task is not None:
                    st.task.cancel()
                self.wake_senders()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.peer_leaving = True
            self._check_done()

    def _request(self, event: h2.events.RequestReceived) -> None:
        sid = event.stream_id
        if self.goaway_sent is not None and sid > self.goaway_sent:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            return
        st = _ServerStream(sid, InboundBody(self, sid))
        early: Response | None = None
        request: Request | None = None
        try:
            head = request_head(as_bytes_fields(event.headers))
        except MalformedRequest as exc:
            early = local_response(exc.status, exc.reason)
        else:
            request = Request(
                head.method, head.scheme, head.authority, head.path, head.headers, st.body, version="2"
            )
        self.streams[sid] = st
        st.task = spawn(self._serve_stream(st, request, early), name=f"h2-stream-{sid}")

    def read_ended(self, error: BaseException | None) -> None:
        self.read_over = True
        if error is not None:  # no frame can go either way any more: every stream is over
            for st in self.streams.values():
                st.reset = True
                st.body.fail(BodyError(f"client connection lost: {error}"))
                if st.task is not None:
                    st.task.cancel()
        self._check_done()

    # -- one stream --------------------------------------------------------------------------------------

    async def _serve_stream(self, st: _ServerStream, request: Request | None, early: Response | None) -> None:
        response = early
        sent_all = False
        try:
            if request is not None:
                try:
                    response = await self.handler(request, self.downstream)
                except Exception as exc:
                    _log.warning("handler failed for stream %d of %s: %r", st.sid, self.describe(), exc)
                    flags = getattr(exc, "flags", "-")
                    flags = flags if isinstance(flags, str) else "-"
                    response = local_response(502, "upstream request failed", flags=flags, details=str(exc))
                if response.upgraded is not None:
                    response.upgraded.abort(StreamAborted("no upgrades over HTTP/2"))
                    response.body.abandon()
                    response = local_response(
                        502, "upgrade over HTTP/2", details="an upgrade answered HTTP/2"
                    )
            assert response is not None
            await self._respond(st, response)
            sent_all = True
        except (StreamGone, asyncio.CancelledError):
            pass  # reset by the client, or the connection is going: nothing more to say on this stream
        except Exception as exc:
            _log.info("response on stream %d of %s broke: %r", st.sid, self.describe(), exc)
            self.reset(st, ErrorCodes.INTERNAL_ERROR)
        finally:
            if response is not None and not sent_all:
                response.body.abandon()
            if not st.remote_done:  # the response is over and nobody will read the rest of the request
                self.reset(st, ErrorCodes.NO_ERROR if sent_all else ErrorCodes.CANCEL)
            st.body.abandon()
            self.streams.pop(st.sid, None)
            self._check_done()

    async def _respond(self, st: _ServerStream, response: Response) -> None:
        try:
            fields = response_fields(response.status, response.headers)
        except ValueError as exc:
            _log.info("unsendable response on stream %d of %s: %s", st.sid, self.describe(), exc)
            response.body.abandon()
            response = local_response(502, "unsendable upstream response", details=str(exc))
            fields = response_fields(response.status, response.headers)
        try:
            chunks = await take_if_complete(response.body)
        except BodyError as exc:  # broke before anything was sent: the client can still get a 502
            response = local_response(502, "upstream response broke", details=str(exc))
            fields = response_fields(response.status, response.headers)
            chunks = await take_if_complete(response.body)
        bare = chunks is not None and not any(chunks) and not trailer_fields(response.body.trailers)
        self.check(st)
        try:
            self.h2.send_headers(st.sid, fields, end_stream=bare)
        except h2.exceptions.ProtocolError as exc:
            raise StreamGone(str(exc) or type(exc).__name__) from exc
        self.flush()
        if bare:
            st.local_done = True
            return
        await self.send_body(st, response.body, chunks)


def _code(code: ErrorCodes | int) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(int(code))


async def serve_h2(
    stream: Duplex,
    downstream: Downstream,
    handler: RequestHandler,
    *,
    initial: bytes = b"",
    drain: Drain | None = None,
) -> None:
    """Serve one HTTP/2 connection (prior knowledge) until it closes, or until ``drain`` has run.

    ``initial`` is what a protocol sniffer read first (the client preface, maybe more). Each request
    goes to ``handler(request, downstream)`` in a task of its own; a client RST_STREAM cancels it. When
    ``drain`` starts: GOAWAY, streams in flight finish (until the drain deadline), then close. A
    broken or malformed connection ends with GOAWAY and a close, never with an exception.
    """
    server = _H2Server(stream, downstream, handler)
    await server.serve(initial, drain)
