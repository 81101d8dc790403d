"""
Interop: QoS figures, the API, Prometheus, tracking and HTTP-FLV with real
clients (ffmpeg publishing and playing, rtmpdump, curl) against the real server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .interop_kit import FlashstreamServer, finish, require_tool, start, stop_process
from .monitoring_interop import (
    ADMIN_TOKEN,
    ffprobe_packets,
    flv_tags,
    get_json,
    monitored_server,
    post,
    publish_args,
)

pytestmark = pytest.mark.interop

VIDEO_KBPS = 400


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[FlashstreamServer, str, Path]]:
    """One monitored server for the module: (server, HTTP base URL, its work folder)."""
    require_tool("ffmpeg")
    workdir = tmp_path_factory.mktemp("monitoring")
    with monitored_server(workdir) as (server, base):
        yield server, base, workdir


def publish(server: FlashstreamServer, name: str, seconds: float) -> Any:
    """Start an ffmpeg publisher of live/name and wait until the server publishes it."""
    mark = server.mark()
    process = start(publish_args(server.url("live", name), seconds, VIDEO_KBPS))
    server.wait_for(rf"Publishing live/{name}\b", timeout=15, start=mark)
    return process


def ffmpeg_player(url: str, seconds: float) -> Any:
    """An ffmpeg player decoding ``url`` for ``seconds``."""
    return start(
        [require_tool("ffmpeg"), "-hide_banner", "-v", "error", "-i", url, "-t", str(seconds)]
        + ["-f", "null", "-"]
    )


def wait_until(check: Any, timeout: float = 15.0) -> Any:
    """Poll ``check()`` (an HTTP read, no sleeps between events we could await) until truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.2)


def test_api_and_metrics_with_a_publisher_and_two_players(
    served: tuple[FlashstreamServer, str, Path], tmp_path: Path
) -> None:
    """
    With ffmpeg publishing and two players (ffmpeg over RTMP, curl over
    HTTP-FLV), the API reports codecs, resolution, frame rate and bitrate
    within 10% of what ffprobe measures in the HTTP-FLV capture, both viewers
    with their transports and an RTT for every RTMP client; /metrics parses
    with prometheus-client's parser.
    """
    server, base, _ = served
    curl = require_tool("curl")
    publisher = publish(server, "qos", 30)
    player = ffmpeg_player(server.url("live", "qos"), 20)
    capture = tmp_path / "capture.flv"
    fetcher = start([curl, "-s", "--max-time", "9", "-o", str(capture), f"{base}/live/qos.flv"])

    def both_viewing() -> Any:
        streams = get_json(f"{base}/api/v1/streams/live/qos")
        return streams if streams["viewers_by_transport"] == {"rtmp": 1, "http-flv": 1} else None

    wait_until(both_viewing)
    time.sleep(5)  # let the rate window (4 s) fill with steady-state media
    stream = get_json(f"{base}/api/v1/streams/live/qos")
    clients = get_json(f"{base}/api/v1/clients")
    metrics = urllib_text(f"{base}/metrics")
    finish(fetcher, timeout=30)

    video = [p for p in ffprobe_packets(capture, "v") if "pts_time" in p]
    audio = [p for p in ffprobe_packets(capture, "a") if "pts_time" in p]
    span = float(video[-1]["pts_time"]) - float(video[0]["pts_time"])
    true_video = sum(int(p["size"]) for p in video[:-1]) * 8 / span
    true_audio = (
        sum(int(p["size"]) for p in audio[:-1])
        * 8
        / (float(audio[-1]["pts_time"]) - float(audio[0]["pts_time"]))
    )
    true_fps = (len(video) - 1) / span
    print(
        f"API video {stream['video']['bitrate']} b/s vs ffprobe {true_video:.0f}; "
        f"audio {stream['audio']['bitrate']} vs {true_audio:.0f}; "
        f"fps {stream['video']['frame_rate']} vs {true_fps:.2f}"
    )
    assert stream["video"]["codec"] == "H.264"
    assert (stream["video"]["width"], stream["video"]["height"]) == (320, 240)
    assert stream["audio"]["codec"] == "AAC"
    assert stream["audio"]["sample_rate"] == 44100
    assert abs(stream["video"]["bitrate"] - true_video) <= 0.1 * true_video
    assert abs(stream["audio"]["bitrate"] - true_audio) <= 0.1 * true_audio
    assert abs(stream["video"]["frame_rate"] - true_fps) <= 0.1 * true_fps
    assert stream["video"]["keyframe_interval_ms"] == 1000
    transports = sorted(v["transport"] for v in stream["viewers"])
    assert transports == ["http-flv", "rtmp"]
    rtmp_clients = [c for c in clients if c["transport"] == "rtmp"]
    assert len(rtmp_clients) == 2  # publisher and ffmpeg player
    assert all(c["rtt_ms"] is not None and c["rtt_ms"] >= 0 for c in rtmp_clients), rtmp_clients
    [curl_client] = [c for c in clients if c["transport"] == "http-flv"]
    assert curl_client["client_version"].startswith("curl/")

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
    }
    live = ("application", "live")
    assert samples[("flashstream_viewers", (live, ("transport", "http-flv")))] == 1
    assert samples[("flashstream_viewers", (live, ("transport", "rtmp")))] == 1
    assert samples[("flashstream_streams", (live,))] >= 1
    assert samples[("flashstream_received_bytes_total", (live, ("transport", "rtmp")))] > 100_000
    stop_process(player)
    stop_process(publisher)


def urllib_text(url: str) -> str:
    """GET a text document."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        text: str = response.read().decode()
        return text


def access_log_rows(path: Path) -> list[dict[str, str]]:
    """The access log's lines as dicts keyed by the #Fields names."""
    fields: list[str] = []
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#Fields: "):
            fields = line[len("#Fields: ") :].split(" ")
        elif line and not line.startswith("#"):
            rows.append(dict(zip(fields, line.split("\t"), strict=True)))
    return rows


def sse_events(path: Path) -> list[dict[str, Any]]:
    """The data of every event in a captured SSE stream."""
    return [
        json.loads(line[len("data: ") :])
        for line in path.read_text().splitlines()
        if line.startswith("data: ")
    ]


def test_access_log_and_event_feed_follow_a_session(
    served: tuple[FlashstreamServer, str, Path], tmp_path: Path
) -> None:
    """
    For a publisher (ffmpeg) and a player (rtmpdump), the access log and the
    SSE feed show connect, publish/play, stop and disconnect in order; the
    player's stream and connection byte counts match what rtmpdump received
    (its FLV file) within 3%.
    """
    server, base, workdir = served
    curl, rtmpdump = require_tool("curl"), require_tool("rtmpdump")
    feed_file = tmp_path / "events.txt"
    feed = start([curl, "-sN", "--max-time", "60", "-o", str(feed_file), f"{base}/api/v1/events"])
    publisher = publish(server, "session", 8)
    dump = tmp_path / "dump.flv"
    # rtmpdump records until the publisher ends the stream, then disconnects.
    code, _, err = finish(
        start([rtmpdump, "--live", "-q", "-r", server.url("live", "session"), "-o", str(dump)]),
        timeout=40,
    )
    assert code in (0, 2), err
    finish(publisher, timeout=30)

    def session_rows() -> list[dict[str, str]]:
        rows = access_log_rows(workdir / "access.log")
        ids = {r["c-client-id"] for r in rows if r["x-sname"] == "session"}
        return [r for r in rows if r["c-client-id"] in ids]

    def both_gone() -> bool:
        rows = session_rows()
        feed_kinds = [e["kind"] for e in sse_events(feed_file)]
        return [r["x-event"] for r in rows].count("disconnect") == 2 and len(
            [k for k in feed_kinds if k == "disconnect"]
        ) >= 2

    wait_until(both_gone)
    stop_process(feed)

    rows = access_log_rows(workdir / "access.log")
    by_client: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_client.setdefault(row["c-client-id"], []).append(row)
    sessions = {
        tuple(r["x-event"] for r in client_rows): client_rows
        for client_rows in by_client.values()
        if any(r["x-sname"] == "session" for r in client_rows)
    }
    assert set(sessions) == {
        ("connect", "publish", "stop", "disconnect"),
        ("connect", "play", "stop", "disconnect"),
    }, list(sessions)
    player_rows = sessions[("connect", "play", "stop", "disconnect")]
    data = dump.read_bytes()
    payload = sum(size for _, size in flv_tags(data))
    stream_bytes = int(player_rows[2]["sc-stream-bytes"])
    connection_bytes = int(player_rows[3]["sc-bytes"])
    print(
        f"rtmpdump payload {payload} vs sc-stream-bytes {stream_bytes}; "
        f"file {len(data)} vs sc-bytes {connection_bytes}"
    )
    assert abs(stream_bytes - payload) <= 0.03 * payload
    assert abs(connection_bytes - len(data)) <= 0.03 * len(data)
    assert float(player_rows[2]["x-duration"]) > 0
    assert player_rows[0]["c-proto"] == "rtmp"

    events = [e for e in sse_events(feed_file) if e["client_id"] in {int(k) for k in by_client}]
    for client_rows in sessions.values():
        client_id = int(client_rows[0]["c-client-id"])
        mine = [e for e in events if e["client_id"] == client_id]
        assert [e["kind"] for e in mine] == [r["x-event"] for r in client_rows]
        assert [e["bytes_out"] for e in mine] == [int(r["sc-bytes"]) for r in client_rows]


def test_http_flv_from_curl_decodes_from_a_keyframe(
    served: tuple[FlashstreamServer, str, Path], tmp_path: Path
) -> None:
    """curl's HTTP-FLV capture decodes with ffmpeg and its first video packet is a keyframe."""
    server, base, _ = served
    curl = require_tool("curl")
    publisher = publish(server, "flv", 20)
    capture = tmp_path / "live.flv"
    code, _, err = finish(
        start([curl, "-s", "--max-time", "4", "-o", str(capture), f"{base}/live/flv.flv"]),
        timeout=20,
    )
    assert code == 28, err  # stopped by --max-time: the live body never ends by itself
    video = ffprobe_packets(capture, "v")
    assert video[0]["flags"].startswith("K"), video[:2]
    assert len(video) >= 50  # the cached group plus ~4 s at 25 fps
    decode = [require_tool("ffmpeg"), "-v", "error", "-i", str(capture), "-f", "framecrc", "-"]
    code, out, err = finish(start(decode), timeout=30)
    assert code == 0, err
    frames = [line for line in out.splitlines() if line.startswith("0,")]
    assert len(frames) >= 50
    assert get_json(f"{base}/api/v1/streams/live/flv")["viewers"] == []
    stop_process(publisher)


def test_admin_drop_closes_exactly_that_client(
    served: tuple[FlashstreamServer, str, Path],
) -> None:
    """Admin actions get 401 without the token; with it, one player is dropped, not the other."""
    server, base, _ = served
    publisher = publish(server, "admin", 30)
    players = [ffmpeg_player(server.url("live", "admin"), 25) for _ in range(2)]

    def viewers() -> Any:
        stream = get_json(f"{base}/api/v1/streams/live/admin")
        return stream["viewers"] if len(stream["viewers"]) == 2 else None

    first, second = wait_until(viewers)
    url = f"{base}/api/v1/clients/{first['client']}/drop"
    assert post(url)[0] == 401
    assert post(url, "wrong-token-wrong-token")[0] == 401
    assert len(get_json(f"{base}/api/v1/streams/live/admin")["viewers"]) == 2
    mark = server.mark()
    assert post(url, ADMIN_TOKEN) == (200, {"dropped": first["client"]})
    server.wait_for(r"dropped by an administrator", timeout=10, start=mark)

    def two_clients_left() -> Any:
        clients = get_json(f"{base}/api/v1/clients")
        return clients if len(clients) == 2 else None

    ids = {c["id"] for c in wait_until(two_clients_left)}
    assert first["client"] not in ids
    assert second["client"] in ids
    stream = get_json(f"{base}/api/v1/streams/live/admin")
    assert [v["client"] for v in stream["viewers"]] == [second["client"]]
    for player in players:
        stop_process(player)
    stop_process(publisher)


def test_players_in_the_same_state_play_in_one_lockstep_group(
    served: tuple[FlashstreamServer, str, Path],
) -> None:
    """Three ffmpeg players of one stream end up in one lockstep group (the
    API says so), and each decodes the whole stream without an error."""
    server, base, _ = served
    publisher = publish(server, "herd", 30)
    decode = [require_tool("ffmpeg"), "-hide_banner", "-v", "error", "-xerror"]
    players = [
        start(decode + ["-i", server.url("live", "herd"), "-t", "6", "-f", "null", "-"])
        for _ in range(3)
    ]

    def grouped() -> Any:
        stream = get_json(f"{base}/api/v1/streams/live/herd")
        viewers = stream["viewers"]
        together = len(viewers) == 3 and all(v["lockstep"] for v in viewers)
        return stream if together and stream["lockstep_groups"] == 1 else None

    wait_until(grouped)
    for player in players:
        code, _, err = finish(player, timeout=30)
        assert code == 0 and err == "", err
    stop_process(publisher)
