"""The chat room's plugin: ``plugin = "chatroom"`` in an application's configuration."""

from __future__ import annotations

from chatroom import ChatRoom
from twisted.plugin import IPlugin
from zope.interface import provider

from flashstream.appapi import IServerApplicationFactory
from flashstream.config import ApplicationConfig


@provider(IPlugin, IServerApplicationFactory)
class ChatRoomPlugin:
    """Builds a ChatRoom per configured application."""

    name = "chatroom"

    @staticmethod
    def build(config: ApplicationConfig) -> ChatRoom:
        """A chat room with the application's settings."""
        return ChatRoom(config.settings)


chatroom = ChatRoomPlugin
