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
    from .rtmp.sharedobject import SharedObjectMessage
    from .streams import NetStream


class ISubscriber(Interface):
    """Receives one live stream from the hub."""

    def stream_started(publish_notify: bool) -> None:
        """The stream's publisher is (now) present.

        ``publish_notify`` is True when the subscriber was waiting for a
        publisher that has just arrived.
        """

    def media(message: Message) -> None:
        """An audio (8), video (9) or data (18) message.

        Timestamps are the publisher's, corrected by the hub: unwrapped to 64
        bits (take them modulo 2**32 to write RTMP or FLV) and never going
        backwards on a track, also across a publisher takeover.
        """

    def publisher_replaced() -> None:
        """Another publisher took the stream over (takeover); stay subscribed.

        The new publisher's metadata, sequence headers and frames follow, with
        timestamps continuing the old publisher's.  A player restarts video
        on the next keyframe; a recorder may simply carry on.
        """

    def stream_ended() -> None:
        """The publisher went away; the subscriber stays subscribed."""


class IStreamApplication(Interface):
    """An RTMP application (``live``, ``vod``, or a plugin's)."""

    name = Attribute("The application name as it appears in the tcUrl.")

    def connect(client: object) -> object:
        """Accept a client by returning, refuse it by raising ``Rejected``.

        ``connect``, ``publish`` and ``play`` may also return a Deferred:
        firing accepts, failing with ``Rejected`` refuses; the adapter times
        out an answer that never comes and ignores one that comes after the
        client left.
        """

    def publish(client: object, stream: NetStream, name: str, publish_type: str) -> object:
        """Start publishing ``name`` from ``stream``; raise ``Rejected`` to refuse.

        The application may rename the stream by setting ``stream.name``.
        """

    def play(client: object, stream: NetStream, name: str, start: float) -> object:
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
class ICallHandler(Interface):
    """An application that answers ``NetConnection.call`` from clients."""

    def call(client: object, method: str, arguments: tuple[object, ...]) -> object:
        """The value for ``_result`` (or a Deferred of it); raising sends ``_error``."""


class ISharedObjectHandler(Interface):
    """An application that serves remote shared objects."""

    def shared_object_message(client: object, message: SharedObjectMessage) -> None:
        """A shared object message (use, change, remove, send...) from ``client``."""


class IServerApplication(Interface):
    """Server-side application logic, provided by a plugin (see ``docs/extending.rst``).

    Every hook may return a value or a Deferred; a hook that raises
    :class:`~flashstream.applications.Rejected` (or fails with it) refuses,
    and the description reaches the client.  A hook that raises anything
    else, or does not answer within the application's ``hook_timeout``, is
    logged and counts as a refusal.  ``client`` is a
    :class:`flashstream.appapi.Client`.
    """

    def start(api: object) -> object:
        """The server starts; ``api`` is the :class:`flashstream.appapi.ApplicationAPI`."""

    def on_connect(client: object, arguments: tuple[object, ...]) -> object:
        """A client connects (``arguments``: extra values after the connect object)."""

    def on_disconnect(client: object) -> object:
        """A client that was accepted went away."""

    def on_publish(client: object, name: str, publish_type: str) -> object:
        """A client wants to publish ``name``."""

    def on_unpublish(client: object, name: str) -> object:
        """A publisher stopped."""

    def on_play(client: object, name: str) -> object:
        """A client wants to play ``name``."""

    def on_stop(client: object, name: str) -> object:
        """A player stopped."""

    def on_call(client: object, method: str, arguments: tuple[object, ...]) -> object:
        """``NetConnection.call(method, responder, arguments...)``; the result goes back."""

    def on_shared_object_change(
        client: object, name: str, changes: dict[str, object], removed: list[str]
    ) -> object:
        """A client changes or removes slots of shared object ``name``; refuse to veto."""
