"""The [api], [tracking] and [qos] sections of the configuration file."""

from __future__ import annotations

from pathlib import Path

import pytest

from flashstream.config import ApiConfig, ConfigError, QosConfig, TrackingConfig, parse_config


def test_defaults() -> None:
    """No sections: no admin token, no access log, no webhooks, 1 s samples over 5 s."""
    config = parse_config({})
    assert config.api == ApiConfig(None)
    assert config.tracking == TrackingConfig()
    assert config.qos == QosConfig(sample_interval=1.0, rate_window=5.0, ping_interval=5.0)


def test_sections_read() -> None:
    """Every key is read; the access log path is relative to the config file."""
    config = parse_config(
        {
            "api": {"admin_token": "x" * 20},
            "tracking": {
                "access_log": "logs/access.log",
                "webhooks": ["http://127.0.0.1:9000/hook"],
                "max_event_clients": 4,
                "max_webhooks_in_flight": 8,
                "event_history": 50,
            },
            "qos": {"sample_interval": 0.5, "rate_window": 3, "ping_interval": 2},
        },
        Path("/etc/flashstream"),
    )
    assert config.api.admin_token == "x" * 20
    assert config.tracking.access_log == Path("/etc/flashstream/logs/access.log")
    assert config.tracking.webhooks == ("http://127.0.0.1:9000/hook",)
    assert (config.tracking.max_event_clients, config.tracking.event_history) == (4, 50)
    assert config.qos == QosConfig(0.5, 3.0, 2.0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"api": {"admin_token": "short"}}, "api.admin_token"),
        ({"api": {"token": "x" * 20}}, "api: unknown keys"),
        ({"tracking": {"access_log": 5}}, "tracking.access_log"),
        ({"tracking": {"webhooks": ["ftp://x"]}}, "tracking.webhooks"),
        ({"tracking": {"max_event_clients": 0}}, "tracking.max_event_clients"),
        ({"qos": {"rate_window": -1}}, "qos.rate_window"),
        ({"qos": {"sample_interval": 2.0, "rate_window": 1.0}}, "at least qos.sample_interval"),
        ({"qos": {"interval": 1}}, "qos: unknown keys"),
    ],
)
def test_mistakes_named(data: dict[str, object], message: str) -> None:
    """Each mistake raises ConfigError naming the key."""
    with pytest.raises(ConfigError, match=message):
        parse_config(data)
