"""
Exceptions raised by the sans-IO core.

``RemoteProtocolError`` means the peer misbehaved: the adapter logs it and
drops the connection.  ``LocalProtocolError`` means our own code misused the
core API (a bug on our side).  Foreign exceptions (``struct.error``,
``UnicodeDecodeError``, ``IndexError``...) are converted into these at the
parse boundary, so nothing else ever leaves the core.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class of every error raised by ``flashstream.rtmp``."""


class LocalProtocolError(ProtocolError):
    """Our side used the core wrongly (a programming error)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something invalid; the connection must be dropped."""


class HandshakeError(RemoteProtocolError):
    """The C0/C1/C2 bytes are not a handshake we can serve."""


class ChunkError(RemoteProtocolError):
    """The chunk stream is malformed (bad header, unknown chunk stream...)."""


class AMFError(RemoteProtocolError):
    """An AMF0 or AMF3 value could not be decoded."""


class MessageError(RemoteProtocolError):
    """A message payload (control, user control, aggregate...) is malformed."""


class CommandError(RemoteProtocolError):
    """A command arrived that is invalid in the connection's current state."""


class LimitExceeded(RemoteProtocolError):
    """The peer went past one of the named limits in :class:`Limits`."""

    def __init__(self, limit: str, value: int, maximum: int) -> None:
        super().__init__(f"{limit} exceeded: {value} > {maximum}")
        self.limit = limit
        self.value = value
        self.maximum = maximum
