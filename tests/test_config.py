"""The TOML configuration file: valid files become frozen values, bad ones clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from flashstream.config import (
    ApplicationConfig,
    Config,
    ConfigError,
    TLSConfig,
    load_config,
    parse_config,
)
from flashstream.rtmp.limits import Limits
from flashstream.rtmp.tunnel import TunnelLimits


def write(tmp_path: Path, text: str) -> Path:
    """Write a config file and return its path."""
    path = tmp_path / "flashstream.toml"
    path.write_text(text)
    return path


def test_defaults_match_product_md() -> None:
    """With no file: RTMP on 1935, RTMPS on 443, HTTP on 80, live and vod, ./media."""
    config = Config()
    assert config.rtmp == ("tcp:1935",)
    assert config.rtmps == ("ssl:443",)
    assert config.http == ("tcp:80",)
    assert config.media_root == Path("media")
    assert config.recordings == Path("media/recordings")
    assert [(a.name, a.kind) for a in config.applications] == [("live", "live"), ("vod", "vod")]
    assert config.tcp_nodelay == "setup"


def test_full_file(tmp_path: Path) -> None:
    """Every section is read; paths are relative to the file; 'none' drops a listener."""
    path = write(
        tmp_path,
        """
[listeners]
rtmp = ["tcp:1935", "tcp:1936:interface=127.0.0.1"]
rtmps = "none"
http = "tcp:8080"

[media]
root = "files"
record_dir = "rec"

[rtmp]
chunk_size = 8192
lockstep_fanout = false
tcp_nodelay = false

[limits]
max_message_size = 1048576
handshake_timeout = 5.5

[applications.studio]
kind = "live"
wait_for_publisher = false

[applications.films]
kind = "vod"
""",
    )
    config = load_config(path)
    assert config.rtmp == ("tcp:1935", "tcp:1936:interface=127.0.0.1")
    assert config.rtmps == ()
    assert config.http == ("tcp:8080",)
    assert config.media_root == tmp_path / "files"
    assert config.recordings == tmp_path / "rec"
    assert config.chunk_size == 8192
    assert config.lockstep_fanout is False
    assert config.tcp_nodelay is False
    assert config.limits == Limits(max_message_size=1048576, handshake_timeout=5.5)
    assert ApplicationConfig("studio", "live", False) in config.applications
    assert ApplicationConfig("films", "vod") in config.applications
    assert {a.name for a in config.applications} >= {"live", "vod"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nonsense = 1", "unknown top-level keys"),
        ("[listeners]\nrtmp = 5", "listeners.rtmp must be"),
        ("[listeners]\nftp = 'tcp:21'", "listeners: unknown keys"),
        ("[limits]\nmax_chunk_sizes = 5", "limits.max_chunk_sizes is not a known limit"),
        ("[limits]\nmax_message_size = -1", "limits.max_message_size must be a positive"),
        ("[limits]\nmax_message_size = 1.5", "limits.max_message_size must be a positive"),
        ("[limits]\nidle_timeout = true", "limits.idle_timeout must be a positive"),
        ("[applications.x]\nkind = 'radio'", "applications.x.kind must be one of"),
        ("[applications.x]\ncolour = 'red'", "applications.x: unknown keys"),
        ("[applications]\nx = 3", "applications.x must be a table"),
        ("[applications.x]\nwait_for_publisher = 'yes'", "wait_for_publisher must be true"),
        ("[rtmp]\nchunk_size = 64", "rtmp.chunk_size must be"),
        ("[rtmp]\nlockstep_fanout = 1", "rtmp.lockstep_fanout must be true or false"),
        ('[rtmp]\ntcp_nodelay = "auto"', 'rtmp.tcp_nodelay must be true, false or "setup"'),
        ("[media]\nroot = 3", "media.root must be a path"),
        ("listeners = 3", "listeners must be a table"),
        ("[[broken", "is not valid TOML"),
        ("[tls]\ncertificate = 'c.pem'", "need tls.private_key"),
        ("[tls]\nkey = 'k.pem'", "tls: unknown keys"),
        ("[tls]\nstate_dir = 3", "tls.state_dir must be a path"),
        ("[tls]\nmax_version = '1.1'", "tls.max_version must be"),
        ("[rtmpt]\nmax_sessions = 0", "rtmpt.max_sessions must be a positive"),
        ("[rtmpt]\nsessions = 3", "rtmpt.sessions is not a known limit"),
        ("[listeners]\nsniff_timeout = 'x'", "sniff_timeout must be a number"),
        ("[listeners]\nsniff_timeout = 0", "sniff_timeout must be positive"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    """Each kind of mistake raises ConfigError with a message naming the key."""
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    """A missing file is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_parse_config_is_pure() -> None:
    """parse_config works on a dict (what tomllib gives) with no file at all."""
    assert parse_config({}) == Config(media_root=Path("media"))


def test_tls_rtmpt_and_sniff_settings(tmp_path: Path) -> None:
    """[tls] paths are relative to the file; [rtmpt] limits and sniff_timeout are read."""
    path = write(
        tmp_path,
        """
[listeners]
sniff_timeout = 3

[tls]
state_dir = "var"
private_key = "key.pem"
certificate = "cert.pem"
chain = "chain.pem"

[rtmpt]
max_sessions = 20
session_timeout = 12.5
""",
    )
    config = load_config(path)
    assert config.sniff_timeout == 3.0
    assert config.tls == TLSConfig(
        tmp_path / "var", tmp_path / "key.pem", tmp_path / "cert.pem", tmp_path / "chain.pem"
    )
    assert config.rtmpt == TunnelLimits(max_sessions=20, session_timeout=12.5)
    assert Config().tls.state_dir == Path("state")


def test_connection_and_shutdown_limits(tmp_path: Path) -> None:
    """max_connections, max_connections_per_address and shutdown_timeout come from [limits]."""
    path = write(
        tmp_path,
        "[limits]\nmax_connections = 50\nmax_connections_per_address = 5\nshutdown_timeout = 2.5\n",
    )
    limits = load_config(path).limits
    assert (limits.max_connections, limits.max_connections_per_address) == (50, 5)
    assert limits.shutdown_timeout == 2.5
    with pytest.raises(ConfigError, match="limits.max_connections_per_address"):
        parse_config({"limits": {"max_connections_per_address": 0}})
