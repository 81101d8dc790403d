# trial's assertion methods are not annotated:
# mypy: disable-error-code="no-untyped-call"
"""
Tests for :mod:`flashstream.vod.recorder`: FLV files from publishers,
finished with a duration and keyframe index, readable after an abrupt stop,
appended to, confined to the record directory; and recording through the
``live`` application (publish type record/append, ``record = "all"``/``"off"``).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from flashstream.applications import LiveApplication
from flashstream.config import ApplicationConfig, ConfigError, parse_config
from flashstream.rtmp.messages import Message
from flashstream.vod.flv import FlvSource, decode_metadata, parse_tag_header
from flashstream.vod.recorder import FlvRecorder, Recordings

from .test_protocol import METADATA, ON_METADATA, ProtocolTestCase
from .vod_media import KEYFRAME_MS, media_dir


def publish_clip(write: object, seconds: float, start_ts: int = 0) -> int:
    """Feed the first ``seconds`` of clip.flv (headers first) to ``write``; return frames fed."""
    source = FlvSource.scan(media_dir() / "clip.flv")
    assert callable(write)
    write(Message(18, 1, start_ts, ON_METADATA))
    for header in source.headers:
        write(Message(header.type_id, 1, start_ts, header.payload))
    reader = source.open(source.seek_point(0))
    count = 0
    while (frame := reader.read()) is not None and frame.timestamp < seconds * 1000:
        write(Message(frame.type_id, 1, start_ts + frame.timestamp, frame.payload))
        count += 1
    reader.close()
    return count


def test_finished_recording_has_duration_and_index(tmp_path: Path) -> None:
    """finish() writes onMetaData first with duration and keyframes that point at keyframes."""
    recorder = FlvRecorder(tmp_path / "rec.flv")
    publish_clip(recorder.write, 6.0, start_ts=5000)  # publisher clock starts at 5 s
    recorder.finish()
    source = FlvSource.scan(tmp_path / "rec.flv")
    assert [p.time for p in source.points] == [0, KEYFRAME_MS, 2 * KEYFRAME_MS]
    assert abs(source.duration - 6.0) < 0.05
    data = (tmp_path / "rec.flv").read_bytes()
    type_id, size, _ = parse_tag_header(data[13:24])
    metadata = decode_metadata(data[24 : 24 + size])
    assert type_id == 18 and metadata is not None
    assert metadata["width"] == METADATA["width"]  # the publisher's fields are kept
    assert metadata["keyframes"] == {
        "times": [0.0, 2.4, 4.8],
        "filepositions": [float(p.position) for p in source.points],
    }
    assert metadata["filesize"] == float(len(data))


def test_unfinished_recording_is_readable(tmp_path: Path) -> None:
    """Without finish() (kill -9) the file plays up to the last tag written."""
    recorder = FlvRecorder(tmp_path / "rec.flv")
    count = publish_clip(recorder.write, 3.0)
    source = FlvSource.scan(tmp_path / "rec.flv")  # nothing buffered in the process
    reader = source.open(source.seek_point(0))
    read = 0
    while reader.read() is not None:
        read += 1
    assert read == count  # from the first keyframe (the headers come before it)
    assert abs(source.duration - 3.0) < 0.1


def test_append_continues_after_the_last_timestamp(tmp_path: Path) -> None:
    """An append recording goes on after the existing file's end, cutting a torn tag."""
    first = FlvRecorder(tmp_path / "rec.flv")
    publish_clip(first.write, 2.0)
    first.finish()
    with open(tmp_path / "rec.flv", "ab") as handle:
        handle.write(b"\x09\x00\x00\x10torn")
    second = FlvRecorder(tmp_path / "rec.flv", append=True)
    publish_clip(second.write, 2.0)
    second.finish()
    source = FlvSource.scan(tmp_path / "rec.flv")
    assert abs(source.duration - 4.0) < 0.1
    # one keyframe per 2 s part: at 0, and just after the first part's last frame
    assert [p.time for p in source.points][0] == 0
    assert len(source.points) == 2 and 1900 < source.points[1].time < 2100


def test_record_paths_stay_in_the_record_dir(tmp_path: Path) -> None:
    """APP/NAME maps under the record dir; .., absolute and empty names are refused."""
    recordings = Recordings(tmp_path)
    assert recordings.path_for("live", "a/b") == (tmp_path / "live" / "a" / "b.flv").resolve()
    for bad in ("../x", "/etc/x", "a/../../x", "", "a//b", "a\\b"):
        assert recordings.path_for("live", bad) is None, bad


class RecordThroughLiveTests(ProtocolTestCase):
    """publish(name, "record"/"append") and record = "all" through the adapter."""

    def setUp(self) -> None:
        """A live application that records into a temporary directory."""
        super().setUp()
        self.record_dir = Path(tempfile.mkdtemp(prefix="flashstream-rec-"))
        self.addCleanup(shutil.rmtree, self.record_dir, True)
        self.recordings = Recordings(self.record_dir)

    def use(self, record: str) -> None:
        """Serve ``live`` with the given record mode."""
        self.applications["live"] = LiveApplication(
            ApplicationConfig("live", "live", record=record), self.hub, self.recordings
        )

    def publish(self, name: str, kind: str) -> list[str]:
        """Publish ``name`` with ``kind``, send 3 s of the clip, disconnect; return the codes."""
        peer = self.peer("ffmpeg_publish")
        peer.connect("live")
        peer.create_stream()
        peer.client.publish(peer.stream_id, name, kind)
        peer.pump()
        codes = peer.client.status_codes()
        if codes == ["NetStream.Publish.Start"]:
            peer.client.set_data_frame(peer.stream_id, METADATA)
            publish_clip(
                lambda m: (
                    peer.client.send_message(
                        Message(m.type_id, peer.stream_id, m.timestamp, m.payload), 6
                    )
                    if m.type_id != 18
                    else None
                ),
                3.0,
            )
            peer.pump()
        peer.lose()
        return codes

    def test_publish_record(self) -> None:
        """A record publish leaves live/NAME.flv, finished when the publisher goes."""
        self.use("client")
        self.assertEqual(self.publish("show", "record"), ["NetStream.Publish.Start"])
        source = FlvSource.scan(self.record_dir / "live" / "show.flv")
        self.assertLess(abs(source.duration - 3.0), 0.1)
        self.assertEqual(self.recordings.active, set())
        self.assertEqual(len(self.formats("Recorded")), 1)

    def test_live_publish_is_not_recorded_by_default(self) -> None:
        """With record = "client", a live publish writes nothing."""
        self.use("client")
        self.publish("show", "live")
        self.assertFalse((self.record_dir / "live").exists())

    def test_record_all(self) -> None:
        """With record = "all", a live publish is recorded."""
        self.use("all")
        self.publish("show", "live")
        self.assertTrue((self.record_dir / "live" / "show.flv").is_file())

    def test_record_off_refuses_record_publish(self) -> None:
        """With record = "off", publish(record) is Publish.Denied."""
        self.use("off")
        self.assertEqual(self.publish("show", "record"), ["NetStream.Publish.Denied"])

    def test_bad_record_name(self) -> None:
        """A name that would leave the record dir is Publish.BadName."""
        self.use("client")
        self.assertEqual(self.publish("../../x", "record"), ["NetStream.Publish.BadName"])

    def test_finish_all_on_shutdown(self) -> None:
        """finish_all() (server stop) finishes an open recording with its index."""
        self.use("client")
        peer = self.peer("ffmpeg_publish")
        peer.connect("live")
        peer.create_stream()
        peer.client.publish(peer.stream_id, "open", "record")
        peer.pump()
        publish_clip(
            lambda m: peer.client.send_message(
                Message(m.type_id, peer.stream_id, m.timestamp, m.payload), 6
            ),
            3.0,
        )
        peer.pump()
        self.recordings.finish_all()
        data = (self.record_dir / "live" / "open.flv").read_bytes()
        _, size, _ = parse_tag_header(data[13:24])
        metadata = decode_metadata(data[24 : 24 + size])
        assert metadata is not None
        self.assertIn("keyframes", metadata)
        self.assertLess(abs(float(metadata["duration"]) - 3.0), 0.1)  # type: ignore[arg-type]


def test_record_setting_in_the_config() -> None:
    """``record`` accepts client/all/off (client by default) and names the key otherwise."""
    config = parse_config({"applications": {"live": {"record": "all"}, "tv": {}}})
    modes = {app.name: app.record for app in config.applications}
    assert modes["live"] == "all" and modes["tv"] == "client"
    with pytest.raises(ConfigError, match="applications.live.record"):
        parse_config({"applications": {"live": {"record": "sometimes"}}})
