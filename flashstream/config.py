# -*- test-case-name: tests.test_config -*-
"""
flashstream's configuration: the TOML file and command line, as frozen values.

``load_config(path)`` reads a TOML file (stdlib ``tomllib``) into
:class:`Config`; every mistake raises :class:`ConfigError` naming the key.
Command-line options are applied on top with ``attrs.evolve`` by ``tap.py``.
No Twisted imports here.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import attrs

from .rtmp.limits import Limits

#: The kinds of application flashstream knows how to serve.
APPLICATION_KINDS = ("live", "vod")
#: What a ``live`` application records: ``client`` (publishes of type
#: record/append), ``all`` (every publish) or ``off`` (none; record/append
#: publishes are refused).
RECORD_MODES = ("client", "all", "off")

DEFAULT_RTMP = ("tcp:1935",)
DEFAULT_RTMPS = ("ssl:443",)
DEFAULT_HTTP = ("tcp:80",)


class ConfigError(Exception):
    """The configuration file or options are invalid."""


@attrs.frozen
class ApplicationConfig:
    """One application (``[applications.NAME]``)."""

    name: str
    kind: str = "live"
    #: For ``live``: a player of a stream not yet published waits for it
    #: (True) or gets NetStream.Play.StreamNotFound at once (False).
    wait_for_publisher: bool = True
    #: One of :data:`RECORD_MODES`.
    record: str = "client"


@attrs.frozen
class Config:
    """Everything flashstream needs to start."""

    rtmp: tuple[str, ...] = DEFAULT_RTMP
    rtmps: tuple[str, ...] = DEFAULT_RTMPS
    http: tuple[str, ...] = DEFAULT_HTTP
    media_root: Path = Path("media")
    record_dir: Path | None = None
    applications: tuple[ApplicationConfig, ...] = (
        ApplicationConfig("live", "live"),
        ApplicationConfig("vod", "vod"),
    )
    limits: Limits = Limits()
    #: Our outgoing chunk size.
    chunk_size: int = 4096

    @property
    def recordings(self) -> Path:
        """Where recordings go (``<media-root>/recordings`` by default)."""
        return self.record_dir if self.record_dir is not None else self.media_root / "recordings"


_TOP_KEYS = {"listeners", "media", "applications", "limits", "rtmp"}


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}{key} must be a table")
    return value


def _endpoints(value: object, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"listeners.{key} must be an endpoint string or a list of them")
    return tuple(v for v in value if v != "none")


def _limits(table: dict[str, Any]) -> Limits:
    fields = {f.name: f for f in attrs.fields(Limits)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(f"limits.{key} is not a known limit (known: {', '.join(fields)})")
        default = fields[key].default
        if isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok or value <= 0:
            raise ConfigError(f"limits.{key} must be a positive number, not {value!r}")
        values[key] = value
    return Limits(**values)


def _applications(table: dict[str, Any]) -> tuple[ApplicationConfig, ...]:
    apps = {"live": ApplicationConfig("live", "live"), "vod": ApplicationConfig("vod", "vod")}
    for name, spec in table.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"applications.{name} must be a table")
        unknown = set(spec) - {"kind", "wait_for_publisher", "record"}
        if unknown:
            raise ConfigError(f"applications.{name}: unknown keys {sorted(unknown)}")
        kind = spec.get("kind", "live")
        if kind not in APPLICATION_KINDS:
            raise ConfigError(
                f"applications.{name}.kind must be one of {APPLICATION_KINDS}, not {kind!r}"
            )
        wait = spec.get("wait_for_publisher", True)
        if not isinstance(wait, bool):
            raise ConfigError(f"applications.{name}.wait_for_publisher must be true or false")
        record = spec.get("record", "client")
        if record not in RECORD_MODES:
            raise ConfigError(
                f"applications.{name}.record must be one of {RECORD_MODES}, not {record!r}"
            )
        apps[name] = ApplicationConfig(name, kind, wait, record)
    return tuple(apps.values())


def parse_config(data: dict[str, Any], base: Path = Path(".")) -> Config:
    """Turn parsed TOML into a :class:`Config` (paths relative to ``base``)."""
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"unknown top-level keys {sorted(unknown)}")
    listeners = _table(data, "listeners", "")
    bad = set(listeners) - {"rtmp", "rtmps", "http"}
    if bad:
        raise ConfigError(f"listeners: unknown keys {sorted(bad)}")
    media = _table(data, "media", "")
    bad = set(media) - {"root", "record_dir"}
    if bad:
        raise ConfigError(f"media: unknown keys {sorted(bad)}")
    rtmp = _table(data, "rtmp", "")
    bad = set(rtmp) - {"chunk_size"}
    if bad:
        raise ConfigError(f"rtmp: unknown keys {sorted(bad)}")
    chunk_size = rtmp.get("chunk_size", 4096)
    if not isinstance(chunk_size, int) or not 128 <= chunk_size <= 0xFFFFFF:
        raise ConfigError("rtmp.chunk_size must be an integer from 128 to 16777215")

    def path(key: str) -> Path | None:
        value = media.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ConfigError(f"media.{key} must be a path string")
        return base / value

    return Config(
        rtmp=_endpoints(listeners.get("rtmp", list(DEFAULT_RTMP)), "rtmp"),
        rtmps=_endpoints(listeners.get("rtmps", list(DEFAULT_RTMPS)), "rtmps"),
        http=_endpoints(listeners.get("http", list(DEFAULT_HTTP)), "http"),
        media_root=path("root") or Path("media"),
        record_dir=path("record_dir"),
        applications=_applications(_table(data, "applications", "")),
        limits=_limits(_table(data, "limits", "")),
        chunk_size=chunk_size,
    )


def load_config(path: Path) -> Config:
    """Read and validate a TOML configuration file."""
    try:
        text = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    return parse_config(data, path.parent)
