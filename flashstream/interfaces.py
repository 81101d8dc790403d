# -*- test-case-name: tests.test_hub -*-
"""
Interfaces at flashstream's extension points, and nowhere else.

``ISubscriber`` is what the hub delivers a live stream to (an RTMP player
today; HTTP-FLV and recorders later).  ``IStreamApplication`` is what a
plugin implements to decide who may connect, publish and play, and what a
``play`` means inside an application.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from .rtmp.messages import Message
    from .streams import NetStream


class ISubscriber(Interface):
    """Receives one live stream from the hub."""

    def stream_started(publish_notify: bool) -> None:
        """The stream's publisher is (now) present.

        ``publish_notify`` is True when the subscriber was waiting for a
        publisher that has just arrived.
        """

    def media(message: Message) -> None:
        """An audio (8), video (9) or data (18) message, publisher timestamps."""

    def stream_ended() -> None:
        """The publisher went away; the subscriber stays subscribed."""


class IStreamApplication(Interface):
    """An RTMP application (``live``, ``vod``, or a plugin's)."""

    name = Attribute("The application name as it appears in the tcUrl.")

    def connect(client: object) -> None:
        """Accept a client by returning, refuse it by raising ``Rejected``."""

    def publish(client: object, stream: NetStream, name: str, publish_type: str) -> None:
        """Start publishing ``name`` from ``stream``; raise ``Rejected`` to refuse."""

    def play(client: object, stream: NetStream, name: str, start: float) -> None:
        """Start playing ``name`` on ``stream``; raise ``Rejected`` to refuse."""

    def stream_length(client: object, name: str) -> float:
        """Seconds of ``name`` for ``getStreamLength`` (0 for live streams)."""

    def disconnect(client: object) -> None:
        """The client went away (always called once per accepted client)."""


class IPlayback(Interface):
    """Controls a NetStream that plays something seekable (a file).

    An application sets ``stream.playback`` in ``play``; the adapter then
    routes the player's ``pause`` and ``seek`` commands here instead of
    applying live-stream behaviour.
    """

    def pause(paused: bool, position: float) -> None:
        """``pause(flag, ms)``: stop or resume sending (Pause.Notify/Unpause.Notify)."""

    def seek(position: float) -> None:
        """``seek(ms)``: continue from the keyframe at or before ``position``."""


class ISwitchablePlayback(IPlayback):
    """Playback that can also switch files (``play2``, multi-bitrate).

    The adapter routes ``play2`` here when ``stream.playback`` provides it,
    and answers NetStream.Play.Failed otherwise.
    """

    def play2(options: dict[str, object]) -> None:
        """``play2({streamName, oldStreamName, start, len, offset, transition})``."""
