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
from typing import Any, Literal

import attrs

from .rtmp.limits import Limits
from .rtmp.tunnel import TunnelLimits

#: The kinds of application flashstream knows how to serve.
APPLICATION_KINDS = ("live", "vod")
#: What a ``live`` application records: ``client`` (publishes of type
#: record/append), ``all`` (every publish) or ``off`` (none; record/append
#: publishes are refused).
RECORD_MODES = ("client", "all", "off")
#: The values of a live application's ``takeover`` (see flashstream.takeover).
TAKEOVER_MODES = ("never", "idle", "always")

DEFAULT_RTMP = ("tcp:1935",)
DEFAULT_RTMPS = ("ssl:443",)
DEFAULT_HTTP = ("tcp:80",)


class ConfigError(Exception):
    """The configuration file or options are invalid."""


#: When native bandwidth detection runs (``bandwidth_check``).
BANDWIDTH_MODES = ("off", "on-request", "on-connect")
#: What signed tokens may be required for (``auth.token_actions``).
TOKEN_ACTIONS = ("publish", "play")


@attrs.frozen
class SharedObjectLimits:
    """Bounds on the shared objects of one application (``[applications.NAME.shared_objects]``)."""

    #: Most shared objects (in use, plus persistent ones on disk).
    max_objects: int = 256
    #: Most slots (keys) in one shared object.
    max_slots: int = 1024
    #: Largest AMF0-encoded size of one shared object's slots, in bytes.
    max_bytes: int = 1024 * 1024
    #: Most shared objects one client may use at once.
    max_uses_per_client: int = 64
    #: Longest shared object name, in characters.
    max_name_length: int = 1024


@attrs.frozen
class AuthConfig:
    """Who may connect, publish and play (``[applications.NAME.auth]``)."""

    #: nginx-rtmp style HTTP callbacks (POST, form-encoded); 2xx allows.
    on_connect: str | None = None
    on_publish: str | None = None
    on_play: str | None = None
    #: Told (not asked) when a publisher or player stops.
    on_done: str | None = None
    #: Seconds a callback may take; no answer in time refuses.
    http_timeout: float = 5.0
    #: Secret of the HMAC-SHA256 tokens (``?expires=..&token=..``).
    token_secret: str | None = None
    #: What needs a valid token when ``token_secret`` is set.
    token_actions: tuple[str, ...] = ("publish",)
    #: A publisher must give ``?password=...`` (stream name or tcUrl query).
    publish_password: str | None = None

    @property
    def enabled(self) -> bool:
        """True if any check is configured."""
        return any(
            (
                self.on_connect,
                self.on_publish,
                self.on_play,
                self.on_done,
                self.token_secret,
                self.publish_password,
            )
        )


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
    #: The name of a server application plugin (``IServerApplicationFactory``).
    plugin: str | None = None
    #: The ``[applications.NAME.settings]`` table, handed to the plugin.
    settings: dict[str, Any] = attrs.field(factory=dict, hash=False)
    #: Seconds an application hook or auth check may take before it counts as a refusal.
    hook_timeout: float = 10.0
    #: Native bandwidth detection: "off", "on-request" (checkBandwidth) or "on-connect".
    bandwidth_check: str = "on-request"
    shared_objects: SharedObjectLimits = SharedObjectLimits()
    auth: AuthConfig = AuthConfig()
    #: For ``live``: what a second publisher of a name gets
    #: (:mod:`flashstream.takeover`): ``never``, ``idle`` or ``always``.
    takeover: str = "idle"
    #: Seconds of silence after which a publisher may be replaced, and the
    #: longest a new publisher waits for the old one (``takeover = "idle"``).
    takeover_idle: float = 5.0
    #: For ``live``: most players at once in this application (0: no limit).
    max_players: int = 0


@attrs.frozen
class ApiConfig:
    """The HTTP API (``[api]``)."""

    #: Bearer token that admin actions (drop a client, stop a stream) require;
    #: admin actions are refused while it is unset.
    admin_token: str | None = None


@attrs.frozen
class TrackingConfig:
    """Real-time tracking (``[tracking]``)."""

    #: W3C extended access log file, one line per event; None for no file.
    access_log: Path | None = None
    #: URLs that receive every event as a JSON POST.
    webhooks: tuple[str, ...] = ()
    #: Most webhook requests in flight at once; events beyond it are dropped (and logged).
    max_webhooks_in_flight: int = 64
    #: Most simultaneous listeners of the Server-Sent Events feed.
    max_event_clients: int = 32
    #: Events kept for SSE clients that (re)connect.
    event_history: int = 200


@attrs.frozen
class QosConfig:
    """Quality-of-service sampling (``[qos]``)."""

    #: Seconds between the counter samples that bitrates are computed from.
    sample_interval: float = 1.0
    #: Seconds of samples a current bitrate is averaged over.
    rate_window: float = 5.0
    #: Seconds between the PingRequests that measure each client's round-trip time.
    ping_interval: float = 5.0


@attrs.frozen
class TLSConfig:
    """The ``[tls]`` table: certificates of the ``--rtmps`` listeners."""

    #: Where flashstream keeps what it creates (the development certificate).
    state_dir: Path = Path("state")
    #: PEM private key; with ``certificate`` it replaces the development certificate.
    private_key: Path | None = None
    #: PEM certificate (may be followed by its chain); defaults to ``private_key``.
    certificate: Path | None = None
    #: PEM intermediate certificates sent after the certificate.
    chain: Path | None = None
    #: Highest TLS version offered: "1.2" (default; rtmpdump/librtmp with
    #: GnuTLS cannot read TLS 1.3 session tickets) or "1.3".
    max_version: str = "1.2"


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
    #: Group live players in the same state (one chunking and one write per
    #: publisher read for all of them, :mod:`flashstream.lockstep`).
    lockstep_fanout: bool = True
    #: TCP_NODELAY on RTMP connections: ``True`` always (no Nagle wait; more,
    #: smaller TCP segments: more CPU per GB), ``False`` never (Nagle's
    #: algorithm, as nginx-rtmp), ``"setup"`` while connecting and starting
    #: to play, then Nagle for the media (``docs/performance.rst``).
    tcp_nodelay: bool | Literal["setup"] = "setup"
    #: Where persistent shared objects are stored (one folder per application).
    shared_objects_dir: Path = Path("sharedobjects")
    api: ApiConfig = ApiConfig()
    tracking: TrackingConfig = TrackingConfig()
    qos: QosConfig = QosConfig()
    #: Certificates for the TLS listeners.
    tls: TLSConfig = TLSConfig()
    #: RTMPT session limits (``[rtmpt]``).
    rtmpt: TunnelLimits = TunnelLimits()
    #: Seconds a new connection on a --rtmp/--rtmps port may take to show
    #: whether it speaks RTMP or HTTP.
    sniff_timeout: float = 10.0

    @property
    def recordings(self) -> Path:
        """Where recordings go (``<media-root>/recordings`` by default)."""
        return self.record_dir if self.record_dir is not None else self.media_root / "recordings"


_TOP_KEYS = {
    "listeners",
    "media",
    "applications",
    "limits",
    "rtmp",
    "api",
    "tracking",
    "qos",
    "rtmpt",
    "tls",
}


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


def _limits(table: dict[str, Any], cls: Any = Limits, where: str = "limits") -> Any:
    fields = {f.name: f for f in attrs.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(f"{where}.{key} is not a known limit (known: {', '.join(fields)})")
        default = fields[key].default
        if isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok or value <= 0:
            raise ConfigError(f"{where}.{key} must be a positive number, not {value!r}")
        values[key] = value
    return cls(**values)


def _tls(table: dict[str, Any], base: Path) -> TLSConfig:
    known = {"state_dir", "private_key", "certificate", "chain", "max_version"}
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"tls: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    table = dict(table)
    max_version = table.pop("max_version", "1.2")
    if max_version not in ("1.2", "1.3"):
        raise ConfigError(f'tls.max_version must be "1.2" or "1.3", not {max_version!r}')
    paths: dict[str, Path] = {}
    for key, value in table.items():
        if not isinstance(value, str):
            raise ConfigError(f"tls.{key} must be a path string")
        paths[key] = base / value
    if ("certificate" in paths or "chain" in paths) and "private_key" not in paths:
        raise ConfigError("tls.certificate and tls.chain need tls.private_key")
    return TLSConfig(**paths, max_version=max_version)


_APP_KEYS = {
    "kind",
    "wait_for_publisher",
    "record",
    "plugin",
    "settings",
    "hook_timeout",
    "bandwidth_check",
    "shared_objects",
    "auth",
    "takeover",
    "takeover_idle",
    "max_players",
}


def _positive_number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{where} must be a positive number, not {value!r}")
    return float(value)


def _shared_object_limits(table: dict[str, Any], where: str) -> SharedObjectLimits:
    fields = {f.name for f in attrs.fields(SharedObjectLimits)}
    values: dict[str, int] = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(f"{where}.{key} is not known (known: {', '.join(sorted(fields))})")
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{where}.{key} must be a positive integer, not {value!r}")
        values[key] = value
    return SharedObjectLimits(**values)


def _auth(table: dict[str, Any], where: str) -> AuthConfig:
    fields = {f.name for f in attrs.fields(AuthConfig)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(f"{where}.{key} is not known (known: {', '.join(sorted(fields))})")
        if key == "http_timeout":
            values[key] = _positive_number(value, f"{where}.{key}")
        elif key == "token_actions":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not set(value) <= set(TOKEN_ACTIONS):
                raise ConfigError(f"{where}.{key} must be a list of {TOKEN_ACTIONS}")
            values[key] = tuple(value)
        else:
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where}.{key} must be a non-empty string")
            if key.startswith("on_") and not value.startswith(("http://", "https://")):
                raise ConfigError(f"{where}.{key} must be an http:// or https:// URL")
            values[key] = value
    return AuthConfig(**values)


def _applications(table: dict[str, Any]) -> tuple[ApplicationConfig, ...]:
    apps = {"live": ApplicationConfig("live", "live"), "vod": ApplicationConfig("vod", "vod")}
    for name, spec in table.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"applications.{name} must be a table")
        unknown = set(spec) - _APP_KEYS
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
        where = f"applications.{name}"
        takeover = spec.get("takeover", "idle")
        if takeover not in TAKEOVER_MODES:
            raise ConfigError(f"{where}.takeover must be one of {TAKEOVER_MODES}, not {takeover!r}")
        idle = spec.get("takeover_idle", 5.0)
        if isinstance(idle, bool) or not isinstance(idle, (int, float)) or not 0 < idle <= 3600:
            raise ConfigError(f"{where}.takeover_idle must be seconds in (0, 3600]")
        players = spec.get("max_players", 0)
        if isinstance(players, bool) or not isinstance(players, int) or players < 0:
            raise ConfigError(f"{where}.max_players must be a count (0: no limit)")
        plugin = spec.get("plugin")
        if plugin is not None and (not isinstance(plugin, str) or not plugin):
            raise ConfigError(f"{where}.plugin must be a plugin name")
        bandwidth = spec.get("bandwidth_check", "on-request")
        if bandwidth not in BANDWIDTH_MODES:
            raise ConfigError(f"{where}.bandwidth_check must be one of {BANDWIDTH_MODES}")
        apps[name] = ApplicationConfig(
            name,
            kind,
            wait,
            record=record,
            plugin=plugin,
            settings=dict(_table(spec, "settings", where + ".")),
            hook_timeout=_positive_number(spec.get("hook_timeout", 10.0), where + ".hook_timeout"),
            bandwidth_check=bandwidth,
            shared_objects=_shared_object_limits(
                _table(spec, "shared_objects", where + "."), where + ".shared_objects"
            ),
            auth=_auth(_table(spec, "auth", where + "."), where + ".auth"),
            takeover=takeover,
            takeover_idle=float(idle),
            max_players=players,
        )
    return tuple(apps.values())


def _positive(table: dict[str, Any], where: str, key: str, default: Any) -> Any:
    value = table.get(key, default)
    if isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or value <= 0:
        raise ConfigError(f"{where}.{key} must be a positive number, not {value!r}")
    return float(value) if isinstance(default, float) else value


def _api(table: dict[str, Any]) -> ApiConfig:
    bad = set(table) - {"admin_token"}
    if bad:
        raise ConfigError(f"api: unknown keys {sorted(bad)}")
    token = table.get("admin_token")
    if token is not None and (not isinstance(token, str) or len(token) < 16):
        raise ConfigError("api.admin_token must be a string of at least 16 characters")
    return ApiConfig(admin_token=token)


def _tracking(table: dict[str, Any], base: Path) -> TrackingConfig:
    defaults = TrackingConfig()
    bad = set(table) - {f.name for f in attrs.fields(TrackingConfig)}
    if bad:
        raise ConfigError(f"tracking: unknown keys {sorted(bad)}")
    access_log = table.get("access_log")
    if access_log is not None and not isinstance(access_log, str):
        raise ConfigError("tracking.access_log must be a path string")
    hooks = table.get("webhooks", [])
    if isinstance(hooks, str):
        hooks = [hooks]
    if not isinstance(hooks, list) or not all(
        isinstance(h, str) and h.startswith(("http://", "https://")) for h in hooks
    ):
        raise ConfigError("tracking.webhooks must be a list of http:// or https:// URLs")
    return TrackingConfig(
        access_log=base / access_log if access_log else None,
        webhooks=tuple(hooks),
        max_webhooks_in_flight=_positive(
            table, "tracking", "max_webhooks_in_flight", defaults.max_webhooks_in_flight
        ),
        max_event_clients=_positive(
            table, "tracking", "max_event_clients", defaults.max_event_clients
        ),
        event_history=_positive(table, "tracking", "event_history", defaults.event_history),
    )


def _qos(table: dict[str, Any]) -> QosConfig:
    defaults = QosConfig()
    names = [f.name for f in attrs.fields(QosConfig)]
    bad = set(table) - set(names)
    if bad:
        raise ConfigError(f"qos: unknown keys {sorted(bad)}")
    config = QosConfig(**{n: _positive(table, "qos", n, getattr(defaults, n)) for n in names})
    if config.rate_window < config.sample_interval:
        raise ConfigError("qos.rate_window must be at least qos.sample_interval")
    return config


def parse_config(data: dict[str, Any], base: Path = Path(".")) -> Config:
    """Turn parsed TOML into a :class:`Config` (paths relative to ``base``)."""
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"unknown top-level keys {sorted(unknown)}")
    listeners = _table(data, "listeners", "")
    bad = set(listeners) - {"rtmp", "rtmps", "http", "sniff_timeout"}
    if bad:
        raise ConfigError(f"listeners: unknown keys {sorted(bad)}")
    media = _table(data, "media", "")
    bad = set(media) - {"root", "record_dir", "shared_objects"}
    if bad:
        raise ConfigError(f"media: unknown keys {sorted(bad)}")
    rtmp = _table(data, "rtmp", "")
    bad = set(rtmp) - {"chunk_size", "lockstep_fanout", "tcp_nodelay"}
    if bad:
        raise ConfigError(f"rtmp: unknown keys {sorted(bad)}")
    chunk_size = rtmp.get("chunk_size", 4096)
    if not isinstance(chunk_size, int) or not 128 <= chunk_size <= 0xFFFFFF:
        raise ConfigError("rtmp.chunk_size must be an integer from 128 to 16777215")
    lockstep_fanout = rtmp.get("lockstep_fanout", True)
    if not isinstance(lockstep_fanout, bool):
        raise ConfigError("rtmp.lockstep_fanout must be true or false")
    tcp_nodelay = rtmp.get("tcp_nodelay", "setup")
    if not isinstance(tcp_nodelay, bool) and tcp_nodelay != "setup":
        raise ConfigError('rtmp.tcp_nodelay must be true, false or "setup"')

    sniff_timeout = listeners.get("sniff_timeout", 10.0)
    if isinstance(sniff_timeout, bool) or not isinstance(sniff_timeout, (int, float)):
        raise ConfigError("listeners.sniff_timeout must be a number of seconds")
    if sniff_timeout <= 0:
        raise ConfigError("listeners.sniff_timeout must be positive")

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
        lockstep_fanout=lockstep_fanout,
        tcp_nodelay=tcp_nodelay,
        shared_objects_dir=path("shared_objects") or Path("sharedobjects"),
        api=_api(_table(data, "api", "")),
        tracking=_tracking(_table(data, "tracking", ""), base),
        qos=_qos(_table(data, "qos", "")),
        tls=_tls(_table(data, "tls", ""), base),
        rtmpt=_limits(_table(data, "rtmpt", ""), TunnelLimits, "rtmpt"),
        sniff_timeout=float(sniff_timeout),
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
