"""
Interop: an ffmpeg publisher dies without a FIN and a new one takes over,
while an ffmpeg player keeps decoding; hot reload by SIGHUP keeps players of
unchanged applications connected and refuses a broken file.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.interop_kit import (
    ffmpeg_play_args,
    ffmpeg_publish_args,
    finish,
    running_server,
    start,
    stop_process,
)
from tests.socket_peer import TRANSPORTS, SocketPeer

pytestmark = pytest.mark.interop

IDLE = 2.0


def test_stopped_publisher_is_taken_over_and_the_player_keeps_decoding(tmp_path: Path) -> None:
    """
    An ffmpeg publisher is frozen with SIGSTOP (its socket stays open, no
    FIN); a new ffmpeg publisher of the same name is live within
    ``takeover_idle`` (2 s) plus margin; an ffmpeg player connected the
    whole time decodes 8 s of media without an error, frames from both
    publishers, with no jump back in time.
    """
    config = tmp_path / "flashstream.toml"
    config.write_text(f'[applications.live]\ntakeover = "idle"\ntakeover_idle = {IDLE}\n')
    with running_server(["--config", str(config)], media_root=tmp_path) as server:
        mark = server.mark()
        url = server.url("live", "switch")
        old = start(ffmpeg_publish_args(url, seconds=40))
        server.wait_for(r"Publishing live/switch\b", timeout=15, start=mark)
        player = start(ffmpeg_play_args(url, 8))
        server.wait_for(r"plays live/switch", timeout=15, start=mark)
        time.sleep(2.0)  # the player decodes the first publisher for a while
        os.kill(old.pid, signal.SIGSTOP)  # our own ffmpeg, by pid: dead without a FIN
        try:
            frozen = time.monotonic()
            takeover_mark = server.mark()
            new = start(ffmpeg_publish_args(url, seconds=40))
            server.wait_for(r"Takeover of live/switch", timeout=IDLE + 10, start=takeover_mark)
            took = time.monotonic() - frozen
            server.wait_for(r"publishes live/switch", timeout=5, start=takeover_mark)
            code, out, err = finish(player, timeout=40)
        finally:
            os.kill(old.pid, signal.SIGKILL)
            old.communicate()
        assert code == 0 and err == "", err
        video = [line for line in out.splitlines() if line.startswith("0,")]
        audio = [line for line in out.splitlines() if line.startswith("1,")]
        assert len(video) >= 150, len(video)  # 8 s at 25 fps, across the switch
        assert len(audio) >= 250, len(audio)
        dts = [int(line.split(",")[1]) for line in video]
        assert dts == sorted(dts)
        assert took < IDLE + 6, f"takeover took {took:.1f}s"
        assert "taken over by another publisher" in server.log_text()
        stop_process(new)


CONFIG = """
[applications.studio]
kind = "live"

[applications.news]
kind = "live"
max_players = 10
"""

RELOADED = CONFIG.replace("max_players = 10", 'max_players = 1\ntakeover = "always"') + (
    '\n[applications.sports]\nkind = "live"\n'
)


def test_sighup_reload_keeps_unchanged_players_and_refuses_broken_files(tmp_path: Path) -> None:
    """
    While an ffmpeg player watches ``studio``, SIGHUP reloads a file that adds
    ``sports`` and changes ``news``'s player limit: the player decodes on
    without an error, ``sports`` accepts players, the new limit holds; then
    a broken file is refused with a log line and ``sports`` still works.
    """
    config = tmp_path / "flashstream.toml"
    config.write_text(CONFIG)
    with running_server(["--config", str(config)], media_root=tmp_path) as server:
        mark = server.mark()
        publisher = start(ffmpeg_publish_args(server.url("studio", "cam"), seconds=30))
        server.wait_for(r"Publishing studio/cam\b", timeout=15, start=mark)
        player = start(ffmpeg_play_args(server.url("studio", "cam"), 6))
        server.wait_for(r"plays studio/cam", timeout=15, start=mark)
        assert server.process is not None
        config.write_text(RELOADED)
        server.process.send_signal(signal.SIGHUP)  # our own server, by pid
        server.wait_for(
            r"Configuration reloaded .*added \['sports'\], changed \['news'\]", 10, mark
        )

        def peer(seed: int) -> SocketPeer:
            return TRANSPORTS["rtmp"].peer(server.port, seed)

        sports = peer(1)
        sports.play("sports", "anything")
        first_news, second_news = peer(2), peer(3)
        first_news.play("news", "x")
        second_news.connect("news")
        second_news.create_stream()
        second_news.client.play(second_news.stream_id, "x")
        second_news.status("NetStream.Play.Failed")

        broken = server.mark()
        config.write_text("[applications.sports]\nkind = 'radio'\n")
        server.process.send_signal(signal.SIGHUP)
        server.wait_for(r"refused, the running one stays: .*applications\.sports\.kind", 10, broken)
        again = peer(4)
        again.play("sports", "anything")

        code, out, err = finish(player, timeout=30)
        assert code == 0 and err == "", err
        assert sum(1 for line in out.splitlines() if line.startswith("0,")) >= 100
        for p in (sports, first_news, second_news, again):
            p.close()
        stop_process(publisher)
