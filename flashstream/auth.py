# -*- test-case-name: tests.test_auth -*-
"""
Authentication and authorization of one application.

Three checks, each optional, configured per application
(``[applications.NAME.auth]``):

* **HTTP callbacks** like nginx-rtmp's ``on_connect``/``on_publish``/
  ``on_play``/``on_done``: a form-encoded POST (``call``, ``app``, ``name``,
  ``addr``, ``clientid``, ``tcurl``, ``flashver``, ``swfurl``, ``pageurl``,
  ``type``, ``args`` and every query argument) made with treq.  Any 2xx
  allows; a 3xx with a ``Location`` renames the stream (publish and play);
  anything else, an error or no answer within ``http_timeout`` refuses.
  ``on_done`` is told when a publisher or player stops; its answer is ignored.
* **Signed expiring tokens**: ``?expires=UNIX&token=HEX`` in the stream name
  or the tcUrl (connect) query, where ``HEX`` is
  ``HMAC-SHA256(secret, "ACTION\\nAPP\\nNAME\\nEXPIRES")`` (see
  :func:`sign_token`), compared in constant time.
* **A publish password**: ``?password=...`` in the stream name or tcUrl query.

A refusal raises :class:`~flashstream.applications.Rejected` with a code the
client understands (NetConnection.Connect.Rejected, NetStream.Publish.Denied,
NetStream.Play.Failed) and a description saying why.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Generator
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import attrs
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from .applications import Rejected
from .config import AuthConfig

CONNECT_REJECTED = "NetConnection.Connect.Rejected"
PUBLISH_DENIED = "NetStream.Publish.Denied"
PLAY_FAILED = "NetStream.Play.Failed"

_CODES = {"connect": CONNECT_REJECTED, "publish": PUBLISH_DENIED, "play": PLAY_FAILED}


class HTTPClient(Protocol):
    """What we need of treq (``treq``, ``treq.client.HTTPClient``, ``StubTreq``)."""

    def post(self, url: str, data: Any = None, **kwargs: Any) -> Deferred[Any]:
        """POST ``data`` to ``url``."""


@attrs.frozen
class AccessRequest:
    """Who asks to do what (the fields an HTTP callback receives)."""

    action: str  # connect, publish, play, done
    app: str
    name: str = ""
    #: The stream name's ``?query`` (without ``?``).
    query: str = ""
    #: The connect ``app`` / tcUrl ``?query``.
    connect_query: str = ""
    addr: str = ""
    client_id: str = ""
    tc_url: str = ""
    flash_ver: str = ""
    swf_url: str = ""
    page_url: str = ""
    #: ``live``/``record``/``append`` for publish.
    publish_type: str = ""

    def arguments(self) -> dict[str, str]:
        """The query arguments, connect query first, stream query winning."""
        values = dict(parse_qsl(self.connect_query, keep_blank_values=True))
        values.update(parse_qsl(self.query, keep_blank_values=True))
        return values


def token_message(action: str, app: str, name: str, expires: int) -> bytes:
    """What a token signs."""
    return f"{action}\n{app}\n{name}\n{expires}".encode()


def sign_token(secret: str, action: str, app: str, name: str, expires: int) -> str:
    """The token allowing ``action`` (publish or play) of ``app/name`` until ``expires``."""
    digest = hmac.new(secret.encode(), token_message(action, app, name, expires), hashlib.sha256)
    return digest.hexdigest()


def token_query(secret: str, action: str, app: str, name: str, expires: int) -> str:
    """``expires=...&token=...`` to append to a stream name after ``?``."""
    return f"expires={expires}&token={sign_token(secret, action, app, name, expires)}"


def check_token(
    secret: str, action: str, app: str, name: str, arguments: dict[str, str], now: float
) -> str | None:
    """None if ``arguments`` hold a valid, unexpired token; else why not."""
    token = arguments.get("token")
    expires_text = arguments.get("expires")
    if not token or not expires_text:
        return "a signed token (expires, token) is required"
    try:
        expires = int(expires_text)
    except ValueError:
        return "the token's expiry is not a number"
    expected = sign_token(secret, action, app, name, expires)
    if not hmac.compare_digest(expected.encode(), token.encode("utf-8", "replace")):
        return "the token is not valid for this stream"
    if expires < now:
        return "the token has expired"
    return None


class AccessControl:
    """The configured checks of one application."""

    _log = Logger()

    def __init__(
        self,
        config: AuthConfig,
        clock: IReactorTime,
        http: HTTPClient | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.http = http

    # -- the three questions ------------------------------------------------------------

    @inlineCallbacks
    def check_connect(self, request: AccessRequest) -> Generator[Deferred[Any], Any, None]:
        """Refuse (Rejected) or allow a connect."""
        if self.config.on_connect:
            yield self._callback(self.config.on_connect, request)

    @inlineCallbacks
    def check_publish(self, request: AccessRequest) -> Generator[Deferred[Any], Any, str]:
        """Refuse (Rejected) or allow a publish; the result is the (maybe renamed) stream name."""
        arguments = request.arguments()
        password = self.config.publish_password
        if password is not None:
            given = arguments.get("password", "")
            if not hmac.compare_digest(password.encode(), given.encode("utf-8", "replace")):
                self._refuse(request, "wrong or missing publish password")
        self._check_token(request, arguments)
        name = request.name
        if self.config.on_publish:
            name = yield self._callback(self.config.on_publish, request)
        return name

    @inlineCallbacks
    def check_play(self, request: AccessRequest) -> Generator[Deferred[Any], Any, str]:
        """Refuse (Rejected) or allow a play; the result is the (maybe renamed) stream name."""
        self._check_token(request, request.arguments())
        name = request.name
        if self.config.on_play:
            name = yield self._callback(self.config.on_play, request)
        return name

    def done(self, request: AccessRequest) -> None:
        """Tell ``on_done`` that a publisher or player stopped (fire and forget)."""
        if not self.config.on_done or self.http is None:
            return
        deferred = self._post(self.config.on_done, attrs.evolve(request, action="done"))
        deferred.addErrback(
            lambda failure: self._log.warn(
                "on_done callback for {app}/{name} failed: {error}",
                app=request.app,
                name=request.name,
                error=failure.getErrorMessage(),
            )
        )

    # -- helpers --------------------------------------------------------------------------

    def _refuse(self, request: AccessRequest, why: str) -> None:
        self._log.warn(
            "Refused {action} of {app}/{name} from {addr}: {why}",
            action=request.action,
            app=request.app,
            name=request.name,
            addr=request.addr,
            why=why,
        )
        subject = f"{request.app}/{request.name}" if request.name else request.app
        raise Rejected(_CODES[request.action], f"{request.action} {subject} refused: {why}.")

    def _check_token(self, request: AccessRequest, arguments: dict[str, str]) -> None:
        secret = self.config.token_secret
        if secret is None or request.action not in self.config.token_actions:
            return
        why = check_token(
            secret, request.action, request.app, request.name, arguments, self.clock.seconds()
        )
        if why is not None:
            self._refuse(request, why)

    def _post(self, url: str, request: AccessRequest) -> Deferred[Any]:
        assert self.http is not None
        fields = request.arguments()
        fields.update(
            {
                "call": request.action,
                "app": request.app,
                "name": request.name,
                "addr": request.addr,
                "clientid": request.client_id,
                "tcurl": request.tc_url,
                "flashver": request.flash_ver,
                "swfurl": request.swf_url,
                "pageurl": request.page_url,
                "type": request.publish_type,
                "args": request.query or request.connect_query,
            }
        )
        deferred = self.http.post(url, data=fields, allow_redirects=False)
        timeout = self.config.http_timeout
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            deferred.cancel()

        timer = self.clock.callLater(timeout, expire)

        def settle(result: object) -> object:
            if timer.active():
                timer.cancel()
            if expired and isinstance(result, Failure):
                return Failure(TimeoutError(f"{url} did not answer within {timeout}s"))
            return result

        return deferred.addBoth(settle)

    @inlineCallbacks
    def _callback(self, url: str, request: AccessRequest) -> Generator[Deferred[Any], Any, str]:
        """POST the request; 2xx keeps the name, 3xx renames, anything else refuses."""
        if self.http is None:
            self._refuse(request, "no HTTP client to ask the callback with")
        try:
            response = yield self._post(url, request)
        except Exception as error:
            why = (
                f"the {request.action} callback did not answer within {self.config.http_timeout}s"
                if isinstance(error, (TimeoutError, CancelledError))
                else f"the {request.action} callback failed ({error})"
            )
            self._refuse(request, why)
        code = int(response.code)
        if 200 <= code < 300:
            return request.name
        if 300 <= code < 400 and request.action in ("publish", "play"):
            location = response.headers.getRawHeaders(b"location", [b""])[0]
            if isinstance(location, bytes):
                location = location.decode("utf-8", "replace")
            new_name = _renamed(location)
            if new_name:
                self._log.info(
                    "{action} of {app}/{name} renamed to {new_name} by the callback",
                    action=request.action,
                    app=request.app,
                    name=request.name,
                    new_name=new_name,
                )
                return new_name
            self._refuse(request, f"the {request.action} callback redirected nowhere")
        self._refuse(request, f"the {request.action} callback answered HTTP {code}")
        raise AssertionError("unreachable")  # _refuse raises


def _renamed(location: str) -> str:
    """The stream name a redirect gives: the last path segment, no query."""
    if "://" in location:
        location = urlsplit(location).path
    return location.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
