"""
Named limits on everything a peer controls.

Every field is a bound the core enforces by raising
:class:`~flashstream.rtmp.errors.LimitExceeded`; each one has a test.  The
configuration file's ``[limits]`` table fills these in.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Limits:
    """Bounds applied to one RTMP connection."""

    #: Largest RTMP message (payload bytes) accepted.  The wire allows 2**24-1;
    #: 4K keyframes need several MB, so the default allows the full range.
    max_message_size: int = 16 * 1024 * 1024 - 1
    #: Largest chunk size a peer may announce; larger values are clamped to
    #: this (peers announce 0x7FFFFFFF meaning "one chunk per message").
    max_chunk_size: int = 0xFFFFFF
    #: How many distinct chunk stream ids may be live at once.
    max_chunk_streams: int = 64
    #: Total bytes held in partially received messages across all chunk streams.
    max_pending_bytes: int = 32 * 1024 * 1024
    #: Deepest nesting of AMF objects/arrays.
    max_amf_depth: int = 32
    #: Most entries in one AMF object, array or reference table.
    max_amf_items: int = 65536
    #: Most NetStreams (createStream) per connection.
    max_streams: int = 32
    #: Seconds allowed to complete the handshake (enforced by the adapter).
    handshake_timeout: float = 10.0
    #: Seconds of silence before we send a ping (enforced by the adapter).
    ping_interval: float = 30.0
    #: Seconds of silence after which a peer is considered dead.
    idle_timeout: float = 60.0
    #: Outbound bytes a player may have waiting, a hard cap (enforced by the
    #: adapter): past half of it video skips to the next keyframe (audio,
    #: data and codec headers continue); a write that would pass it drops
    #: the player.
    max_send_backlog: int = 4 * 1024 * 1024
    #: Seconds a player may stay past half of ``max_send_backlog`` before it
    #: is dropped as too far behind (enforced by the adapter).
    slow_player_timeout: float = 30.0
    #: Most events in one shared object message (type 16/19).
    max_so_events: int = 4096
    #: Most calls the server has made to one client that are still unanswered.
    max_pending_calls: int = 64
    #: Most RTMP connections the server holds at once; more are refused
    #: (enforced by the adapter's factory).
    max_connections: int = 20000
    #: Most RTMP connections from one IP address at once; more are refused
    #: (enforced by the adapter's factory).
    max_connections_per_address: int = 1000
    #: Seconds the last bytes to a dropped peer may take to drain before the
    #: connection is aborted (a peer that stopped reading never lets a
    #: graceful close finish).
    close_timeout: float = 10.0
    #: Seconds clients get at server shutdown to receive their goodbyes
    #: (Unpublish, Play.Stop) and close; the rest are then cut off.
    shutdown_timeout: float = 5.0
