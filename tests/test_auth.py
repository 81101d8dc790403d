# -*- test-case-name: tests.test_auth -*-
"""Tests for :mod:`flashstream.auth`: tokens, the publish password, HTTP callbacks (StubTreq)."""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from flashstream.applications import Rejected
from flashstream.auth import (
    AccessControl,
    AccessRequest,
    check_token,
    sign_token,
    token_query,
)
from flashstream.config import AuthConfig


class Callback(Resource):
    """Answers with a status (and Location) the test chooses; remembers the forms."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.code = 200
        self.location: bytes | None = None
        self.forms: list[dict[bytes, list[bytes]]] = []
        self.hang = False

    def render_POST(self, request: Request) -> Any:  # noqa: N802 (twisted.web's name)
        """Record and answer."""
        self.forms.append(dict(request.args or {}))
        if self.hang:
            return NOT_DONE_YET
        request.setResponseCode(self.code)
        if self.location is not None:
            request.setHeader(b"location", self.location)
        return b""


class TokenTests(SynchronousTestCase):
    """Signed expiring tokens."""

    def test_valid_expired_tampered(self) -> None:
        """A token is valid for its action, app, name and time, and nothing else."""
        token = sign_token("k", "publish", "live", "cam", 1000)
        args = {"expires": "1000", "token": token}
        self.assertIsNone(check_token("k", "publish", "live", "cam", args, 999.0))
        self.assertEqual(
            check_token("k", "publish", "live", "cam", args, 1001.0), "the token has expired"
        )
        for action, app, name in [
            ("play", "live", "cam"),
            ("publish", "x", "cam"),
            ("publish", "live", "other"),
        ]:
            self.assertEqual(
                check_token("k", action, app, name, args, 0.0),
                "the token is not valid for this stream",
            )
        self.assertIsNotNone(check_token("other", "publish", "live", "cam", args, 0.0))
        later = dict(args, expires="2000")  # extending the expiry breaks the signature
        self.assertIsNotNone(check_token("k", "publish", "live", "cam", later, 0.0))
        self.assertIsNotNone(check_token("k", "publish", "live", "cam", {}, 0.0))
        bad = dict(args, expires="soon")
        self.assertIsNotNone(check_token("k", "publish", "live", "cam", bad, 0.0))
        self.assertEqual(
            token_query("k", "publish", "live", "cam", 1000), f"expires=1000&token={token}"
        )


class AccessTests(SynchronousTestCase):
    """AccessControl with a Clock and StubTreq."""

    def setUp(self) -> None:
        """A clock and a callback resource."""
        self.clock = Clock()
        self.clock.advance(500)
        self.resource = Callback()
        self.http = StubTreq(self.resource)

    def control(self, **config: Any) -> AccessControl:
        """AccessControl with these settings."""
        http: Any = self.http
        return AccessControl(AuthConfig(**config), self.clock, http)

    def refused(self, deferred: Any) -> Rejected:
        """The Rejected a check failed with."""
        failure = self.failureResultOf(deferred, Rejected)
        assert isinstance(failure.value, Rejected)
        return failure.value

    def test_token_in_stream_or_tcurl_query(self) -> None:
        """The token may come with the stream name or the connect URL."""
        access = self.control(token_secret="k")
        query = token_query("k", "publish", "live", "cam", 600)
        ok = AccessRequest("publish", "live", "cam", query=query)
        self.assertEqual(self.successResultOf(access.check_publish(ok)), "cam")
        via_tcurl = AccessRequest("publish", "live", "cam", connect_query=query)
        self.assertEqual(self.successResultOf(access.check_publish(via_tcurl)), "cam")
        missing = self.refused(access.check_publish(AccessRequest("publish", "live", "cam")))
        self.assertEqual(missing.code, "NetStream.Publish.Denied")
        self.assertIn("a signed token", missing.description)
        # play needs no token unless configured
        self.assertEqual(
            self.successResultOf(access.check_play(AccessRequest("play", "live", "cam"))), "cam"
        )
        strict = self.control(token_secret="k", token_actions=("play",))
        refused = self.refused(strict.check_play(AccessRequest("play", "live", "cam")))
        self.assertEqual(refused.code, "NetStream.Play.Failed")

    def test_publish_password(self) -> None:
        """``?password=`` must match."""
        access = self.control(publish_password="pw")
        good = AccessRequest("publish", "live", "cam", query="password=pw")
        self.successResultOf(access.check_publish(good))
        bad = AccessRequest("publish", "live", "cam", query="password=no")
        self.assertIn("password", self.refused(access.check_publish(bad)).description)

    def test_callbacks(self) -> None:
        """2xx allows, 403 refuses, 302 renames; the form carries the nginx fields."""
        access = self.control(on_publish="http://cb/publish", on_connect="http://cb/connect")
        request = AccessRequest(
            "publish", "live", "cam", query="user=u", addr="10.0.0.1", publish_type="live"
        )
        self.assertEqual(self.successResultOf(access.check_publish(request)), "cam")
        form = self.resource.forms[-1]
        self.assertEqual(form[b"call"], [b"publish"])
        self.assertEqual(form[b"name"], [b"cam"])
        self.assertEqual(form[b"user"], [b"u"])
        self.assertEqual(form[b"addr"], [b"10.0.0.1"])
        self.resource.code = 403
        refused = self.refused(access.check_publish(request))
        self.assertIn("answered HTTP 403", refused.description)
        self.refused(access.check_connect(AccessRequest("connect", "live")))
        self.resource.code = 302
        self.resource.location = b"rtmp://elsewhere/live/renamed?x=1"
        self.assertEqual(self.successResultOf(access.check_publish(request)), "renamed")

    def test_callback_timeout(self) -> None:
        """No answer within http_timeout refuses."""
        self.resource.hang = True
        access = self.control(on_play="http://cb/play", http_timeout=2.0)
        deferred = access.check_play(AccessRequest("play", "live", "cam"))
        self.assertNoResult(deferred)
        self.clock.advance(2.0)
        self.assertIn("did not answer within 2.0s", self.refused(deferred).description)

    def test_on_done(self) -> None:
        """on_done is told, with call=done."""
        access = self.control(on_done="http://cb/done")
        access.done(AccessRequest("publish", "live", "cam"))
        self.assertEqual(self.resource.forms[-1][b"call"], [b"done"])
