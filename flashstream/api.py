# -*- test-case-name: tests.test_api -*-
"""
The HTTP API under ``/api/v1``: JSON views of the QoS figures, the live
event feed, and admin actions behind a bearer token.

=========================================  ==========================================
``GET /api/v1/server``                     server figures (connections, CPU, memory...)
``GET /api/v1/streams``                    every live stream with codecs, rates, viewers
``GET /api/v1/streams/APP/NAME``           one stream
``GET /api/v1/clients``                    every client with its QoS figures
``GET /api/v1/clients/ID``                 one client
``GET /api/v1/events``                     Server-Sent Events: connect, publish, play...
``POST /api/v1/clients/ID/drop``           admin: close that client's connection
``POST /api/v1/streams/APP/NAME/stop``     admin: stop a stream (its publisher is closed)
=========================================  ==========================================

Admin actions need ``Authorization: Bearer TOKEN`` with the ``[api]
admin_token`` of the configuration: 401 without it or with a wrong one, 403
while no token is configured.  The API is mounted at ``/api`` of the
``--http`` listener, so the routes below start at ``/v1``.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from klein import Klein
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from .qos import QosMonitor
from .tracking import EventFeed


def _json(request: IRequest, value: object, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return json.dumps(value, indent=1).encode() + b"\n"


class API:
    """The ``/api`` Klein app."""

    app = Klein()
    _log = Logger()

    def __init__(self, qos: QosMonitor, feed: EventFeed, admin_token: str | None) -> None:
        self.qos = qos
        self.feed = feed
        self.admin_token = admin_token

    # -- reading ----------------------------------------------------------------

    @app.route("/v1/server", methods=["GET"])
    def server(self, request: IRequest) -> bytes:
        """Server-wide figures."""
        return _json(request, self.qos.server())

    @app.route("/v1/streams", methods=["GET"])
    def streams(self, request: IRequest) -> bytes:
        """Every live stream."""
        return _json(request, self.qos.streams())

    @app.route("/v1/streams/<app_name>/<path:name>", methods=["GET"])
    def stream(self, request: IRequest, app_name: str, name: str) -> bytes:
        """One live stream, or 404."""
        for stream in self.qos.streams():
            if stream["app"] == app_name and stream["name"] == name:
                return _json(request, stream)
        return _json(request, {"error": f"{app_name}/{name} is not live"}, 404)

    @app.route("/v1/clients", methods=["GET"])
    def clients(self, request: IRequest) -> bytes:
        """Every client."""
        return _json(request, self.qos.clients())

    @app.route("/v1/clients/<int:client_id>", methods=["GET"])
    def client(self, request: IRequest, client_id: int) -> bytes:
        """One client, or 404."""
        for client in self.qos.clients():
            if client["id"] == client_id:
                return _json(request, client)
        return _json(request, {"error": f"no client {client_id}"}, 404)

    @app.route("/v1/events", methods=["GET"])
    def events(self, request: IRequest) -> Deferred[bytes] | bytes:
        """The live event feed (Server-Sent Events)."""
        return self.feed.serve(request)

    # -- admin ------------------------------------------------------------------

    def _refused(self, request: IRequest) -> bytes | None:
        """The error answer if ``request`` lacks the admin token, else None."""
        if self.admin_token is None:
            return _json(request, {"error": "admin actions are off: set [api] admin_token"}, 403)
        header = (request.getHeader(b"authorization") or b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self.admin_token.encode()
        ):
            request.setHeader(b"WWW-Authenticate", b'Bearer realm="flashstream"')
            self._log.warn(
                "Refused admin request {method} {uri} from {peer}: no valid token",
                method=request.method,
                uri=request.uri,
                peer=request.getClientAddress(),
            )
            return _json(request, {"error": "a valid bearer token is required"}, 401)
        return None

    @app.route("/v1/clients/<int:client_id>/drop", methods=["POST"])
    def drop_client(self, request: IRequest, client_id: int) -> bytes:
        """Close one client's connection."""
        refused = self._refused(request)
        if refused is not None:
            return refused
        client = self.qos.find_client(client_id)
        if client is None:
            return _json(request, {"error": f"no client {client_id}"}, 404)
        self._log.info("Admin drops client {id} ({peer})", id=client_id, peer=client.peer)
        client.goodbye("dropped by an administrator")
        return _json(request, {"dropped": client_id})

    @app.route("/v1/streams/<app_name>/<path:name>/stop", methods=["POST"])
    def stop_stream(self, request: IRequest, app_name: str, name: str) -> bytes:
        """Stop a live stream by closing its publisher's connection."""
        refused = self._refused(request)
        if refused is not None:
            return refused
        publication = self.qos.find_stream(app_name, name)
        if publication is None:
            return _json(request, {"error": f"{app_name}/{name} is not live"}, 404)
        publisher: Any = publication.publisher
        self._log.info("Admin stops {app}/{name}", app=app_name, name=name)
        if hasattr(publisher, "goodbye"):
            publisher.goodbye(f"stream {app_name}/{name} stopped by an administrator")
        else:
            self.qos.hub.unpublish(publication)
        return _json(request, {"stopped": f"{app_name}/{name}"})
