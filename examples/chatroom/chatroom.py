"""
A chat room: a flashstream server application (the worked example of
``docs/extending.rst``).

* ``connect(url, userName)``: the user name is required and must be free;
  the room's shared object ``users`` lists who is in (slot per user).
* ``nc.call("sendMessage", responder, text)``: every client's
  ``onMessage(from, text)`` is called; the caller gets the number of
  clients that received it.
* ``nc.call("askEveryone", responder, question)``: the server calls
  ``answerQuestion(question)`` on every other client and returns their
  answers (a server-to-client call with result correlation).
* Only the user named in ``settings.presenter`` may publish a stream.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import DeferredList

from flashstream.appapi import ServerApplication
from flashstream.applications import Rejected


class ChatRoom(ServerApplication):
    """The chat room application."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.presenter = settings.get("presenter")

    def start(self, api: Any) -> None:
        """Open the shared user list."""
        super().start(api)
        self.users = api.shared_object("users")

    def on_connect(self, client: Any, arguments: tuple[object, ...]) -> None:
        """A user name is required and must be free."""
        name = arguments[0] if arguments else None
        if not isinstance(name, str) or not name:
            raise Rejected("NetConnection.Connect.Rejected", "Give a user name to chat.")
        if self.users.get(name) is not None:
            raise Rejected("NetConnection.Connect.Rejected", f"{name} is already in the room.")
        client.data["name"] = name
        self.users.set(name, {"peer": client.peer})

    def on_disconnect(self, client: Any) -> None:
        """Take the user off the list."""
        name = client.data.get("name")
        if name is not None:
            self.users.remove(name)

    def on_publish(self, client: Any, name: str, publish_type: str) -> None:
        """Only the presenter may publish."""
        if client.data.get("name") != self.presenter:
            raise Rejected("NetStream.Publish.Denied", "Only the presenter may publish.")

    def remote_sendMessage(self, client: Any, text: object) -> float:
        """Send ``text`` to everyone; answer how many got it."""
        clients = self.api.clients
        self.api.broadcast("onMessage", client.data["name"], text)
        return float(len(clients))

    def remote_askEveryone(self, client: Any, question: object) -> Any:
        """Ask every other client; answer with {name: answer}."""
        others = [c for c in self.api.clients if c is not client]
        calls = [c.call("answerQuestion", question) for c in others]

        def collect(results: list[tuple[bool, object]]) -> dict[str, object]:
            return {
                c.data["name"]: value if ok else None
                for c, (ok, value) in zip(others, results, strict=True)
            }

        return DeferredList(calls, consumeErrors=True).addCallback(collect)
