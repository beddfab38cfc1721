"""Why an upstream exchange failed, as an Envoy response flag the access log and metrics can carry."""

from __future__ import annotations

# Envoy response flags an upstream client can raise.
CONNECT_FAILURE = "UF"  # could not open a connection to the upstream
CONNECTION_TERMINATION = "UC"  # the upstream connection ended while the exchange was in flight
REMOTE_RESET = "UR"  # the upstream reset the stream (or refused it)
PROTOCOL_ERROR = "UPE"  # the upstream broke the protocol (a malformed response)
DOWNSTREAM_TERMINATION = "DC"  # the request's own client went away (its body broke) mid-exchange


class UpstreamError(ConnectionError):
    """The request could not be sent, or its response head not received; ``flags`` says why.

    ``refused``: the upstream never processed the request (an HTTP/2 ``REFUSED_STREAM`` reset, or a
    stream above a GOAWAY's last stream id), so it is safe to send again (Envoy's ``refused-stream``
    retry condition)."""

    def __init__(self, flags: str, message: str = "", *, refused: bool = False) -> None:
        super().__init__(message or flags)
        self.flags = flags
        self.refused = refused
