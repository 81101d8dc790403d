# -*- test-case-name: tests.test_httpflv -*-
"""
Live HTTP-FLV: ``GET /APP/STREAM.flv`` streams a live stream as one endless
FLV file (what mpegts.js, flv.js, ffmpeg, VLC and curl consume).

Each request becomes an :class:`HTTPFLVViewer`, an
:class:`~flashstream.interfaces.ISubscriber` of the hub: it writes the FLV
header, then the hub's startup messages (metadata, sequence headers and the
cached keyframe group, so playback starts at once on a keyframe), then live
messages, as FLV tags with timestamps starting at 0.  Like an RTMP player it
waits for a keyframe before sending video, and while the client does not
keep up (the transport pauses us) it drops video until the next keyframe and,
past ``Limits.max_send_backlog`` bytes, everything but codec headers.
"""

from __future__ import annotations

from typing import cast

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from zope.interface import implementer

from .hub import Publication, StreamHub
from .interfaces import ISubscriber
from .qos import QosMonitor
from .rtmp import media
from .rtmp.limits import Limits
from .rtmp.messages import Message, MessageType
from .tracking import Tracker

#: FLV tag types we forward (audio, video, script data).
_TAG_TYPES = (MessageType.AUDIO, MessageType.VIDEO, MessageType.DATA_AMF0)


def flv_header(audio: bool, video: bool) -> bytes:
    """The 9-byte FLV file header and the first PreviousTagSize (0)."""
    flags = (4 if audio else 0) | (1 if video else 0)
    return b"FLV\x01" + bytes([flags]) + b"\x00\x00\x00\x09" + b"\x00\x00\x00\x00"


def flv_tag(type_id: int, timestamp: int, payload: bytes) -> bytes:
    """One FLV tag (header, body, PreviousTagSize) for an RTMP audio/video/data message."""
    size = len(payload)
    timestamp %= 2**32
    header = (
        bytes([type_id])
        + size.to_bytes(3, "big")
        + (timestamp & 0xFFFFFF).to_bytes(3, "big")
        + bytes([timestamp >> 24])
        + b"\x00\x00\x00"
    )
    return header + payload + (11 + size).to_bytes(4, "big")


@implementer(ISubscriber, IPushProducer)
class HTTPFLVViewer:
    """One HTTP-FLV client of a live stream."""

    _log = Logger()
    transport_name = "http-flv"

    def __init__(
        self,
        request: IRequest,
        publication: Publication,
        hub: StreamHub,
        qos: QosMonitor,
        tracker: Tracker,
        clock: IReactorTime,
        limits: Limits,
    ) -> None:
        self.request = request
        self.hub = hub
        self.qos = qos
        self.tracker = tracker
        self.clock = clock
        self.limits = limits
        self.app_name = publication.app
        self.stream_name = publication.name
        self.client_id = qos.factory.next_client_id()
        address = request.getClientAddress()
        self.peer = f"{getattr(address, 'host', '?')}:{getattr(address, 'port', '?')}"
        agent = request.getHeader(b"user-agent")
        self.user_agent = agent.decode("latin-1")[:200] if agent else ""
        self.connected_at = clock.seconds()
        self.bytes_sent = 0
        self.frames_dropped = 0
        self._base: int | None = None
        self._need_keyframe = True
        self._paused = False
        self._backlog = 0
        self._closed = False
        self.done: Deferred[bytes] = Deferred(self._cancelled)
        self._header = flv_header(
            audio=publication.audio_header is not None,
            video=publication.video_header is not None
            or any(m.type_id == MessageType.VIDEO for m in publication.gop),
        )

    def start(self) -> Deferred[bytes]:
        """Send the header, subscribe to the hub; the Deferred fires when the response ends."""
        request = self.request
        request.setHeader(b"Content-Type", b"video/x-flv")
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"Access-Control-Allow-Origin", b"*")
        cast(IConsumer, request).registerProducer(self, True)
        self._write(self._header)
        self.qos.http_clients[self.client_id] = self
        self.tracker.http_event("play", self)
        self._log.info(
            "{peer} plays {app}/{name} over HTTP-FLV",
            peer=self.peer,
            app=self.app_name,
            name=self.stream_name,
        )
        self.hub.subscribe(self.app_name, self.stream_name, self)
        return self.done

    def _write(self, data: bytes) -> None:
        if self._paused:
            self._backlog += len(data)
        self.bytes_sent += len(data)
        self.request.write(data)

    # -- ISubscriber ------------------------------------------------------------

    def stream_started(self, publish_notify: bool) -> None:
        """Nothing to announce: the FLV body simply continues."""

    def publisher_replaced(self) -> None:
        """A takeover: the FLV body continues, video from the new publisher's keyframe."""
        self._need_keyframe = True

    def media(self, message: Message) -> None:
        """Write one message as an FLV tag, unless it must be dropped."""
        if self._closed:
            return
        type_id = message.type_id
        if type_id not in _TAG_TYPES:
            return
        payload = message.payload
        header = media.is_sequence_header(type_id, payload)
        if not header and self._paused and self._backlog >= self.limits.max_send_backlog:
            self._drop()
            return
        if type_id == MessageType.VIDEO and not header:
            if media.is_keyframe(payload):
                if self._paused:
                    self._drop()
                    return
                self._need_keyframe = False
            elif self._need_keyframe or self._paused:
                self._drop()
                return
        if self._base is None:
            self._base = message.timestamp
        offset = (message.timestamp - self._base) % 2**32
        timestamp = 0 if offset >= 2**31 else offset  # slightly before the first tag
        self._write(flv_tag(type_id, timestamp, payload))

    def _drop(self) -> None:
        self._need_keyframe = True
        self.frames_dropped += 1

    def stream_ended(self) -> None:
        """The publisher left: end the FLV body (once the hub is done with us)."""
        self.clock.callLater(0, self.disconnect, "the stream ended")

    # -- IPushProducer ----------------------------------------------------------

    def pauseProducing(self) -> None:
        """The client is not keeping up: drop video until it drains."""
        self._paused = True
        self._backlog = 0

    def resumeProducing(self) -> None:
        """The client drained: resume at the next keyframe."""
        self._paused = False
        self._backlog = 0

    def stopProducing(self) -> None:
        """The connection is going away."""
        self._paused = True

    # -- ending -------------------------------------------------------------------

    def disconnect(self, reason: str) -> None:
        """End the response (stream ended, server stopping)."""
        if self._close(reason):
            self.done.callback(b"")

    def goodbye(self, reason: str) -> None:
        """End the response (an administrator dropped us)."""
        self.disconnect(reason)

    def _cancelled(self, deferred: Deferred[bytes]) -> None:
        self._close("the client went away")

    def _close(self, reason: str) -> bool:
        if self._closed:
            return False
        self._closed = True
        self.hub.unsubscribe(self.app_name, self.stream_name, self)
        if getattr(self.request, "channel", None) is not None:  # gone once the connection is lost
            cast(IConsumer, self.request).unregisterProducer()
        self.qos.http_client_gone(self)
        self.tracker.http_event(
            "stop",
            self,
            duration=round(self.clock.seconds() - self.connected_at, 3),
            stream_bytes_out=self.bytes_sent,
            comment=reason,
        )
        self._log.info(
            "HTTP-FLV viewer {peer} of {app}/{name} done: {reason}",
            peer=self.peer,
            app=self.app_name,
            name=self.stream_name,
            reason=reason,
        )
        return True


class HTTPFLV:
    """The fallback Klein app of the web root: ``/APP/STREAM.flv``."""

    app = Klein()

    def __init__(
        self,
        hub: StreamHub,
        qos: QosMonitor,
        tracker: Tracker,
        clock: IReactorTime,
        limits: Limits = Limits(),
    ) -> None:
        self.hub = hub
        self.qos = qos
        self.tracker = tracker
        self.clock = clock
        self.limits = limits

    @app.route("/<app_name>/<path:name>", methods=["GET"])
    def play(self, request: IRequest, app_name: str, name: str) -> Deferred[bytes] | bytes:
        """Stream ``app_name/name`` (``name`` ends in ``.flv``), or 404."""
        if not name.endswith(".flv"):
            request.setResponseCode(404)
            return b"not found\n"
        stream = name[: -len(".flv")]
        publication = self.hub.get(app_name, stream)
        if publication is None:
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain")
            return f"{app_name}/{stream} is not live\n".encode()
        viewer = HTTPFLVViewer(
            request, publication, self.hub, self.qos, self.tracker, self.clock, self.limits
        )
        return viewer.start()
