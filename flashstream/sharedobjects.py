# -*- test-case-name: tests.test_sharedobjects -*-
"""
Remote shared objects of one application, and their persistence.

A :class:`SharedObjectStore` holds the shared objects of one application:
their slots (key to AMF value), version numbers and subscribers.  It applies
what clients ask (use, release, change, remove, send) and what the
application does through its API, and answers with the messages of
rtmp-protocol.md section 9: a change bumps the version once, the requester
gets Success and everybody else Change, all stamped with the new version.

Persistent shared objects live in ``<directory>/<app>/`` as one file each,
written atomically (temporary file, fsync, rename), and come back with their
version after a restart.  Limits bound the number of objects, the slots of
one object and its encoded size.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

import attrs
from twisted.logger import Logger

from .config import SharedObjectLimits
from .rtmp import amf0
from .rtmp.amf0 import ECMAArray
from .rtmp.errors import ProtocolError
from .rtmp.messages import MessageType
from .rtmp.sharedobject import SharedObjectMessage, SOEvent, SOEventType

#: Marks the files we write (first AMF0 value).
FILE_MAGIC = "flashstream-shared-object"
FILE_FORMAT = 1.0

NO_WRITE_ACCESS = "SharedObject.NoWriteAccess"
BAD_PERSISTENCE = "SharedObject.BadPersistence"
CREATION_FAILED = "SharedObject.ObjectCreationFailed"


class SharedObjectRefused(Exception):
    """A request on a shared object is refused; ``code`` goes back in a Status event."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Subscriber(Protocol):
    """Someone who receives a shared object's messages (a client connection)."""

    def deliver_shared_object(self, message: SharedObjectMessage) -> None:
        """Send ``message`` to the client."""


@attrs.define(eq=False)
class SharedObject:
    """One shared object: slots, version and who uses it."""

    name: str
    persistent: bool
    version: int = 0
    data: dict[str, object] = attrs.Factory(dict)
    #: subscriber -> the message type (19 or 16) it uses.
    subscribers: dict[Subscriber, int] = attrs.Factory(dict)
    #: Held by the application API: not discarded when nobody uses it.
    pinned: bool = False


def encoded_size(data: dict[str, object]) -> int:
    """The AMF0-encoded size of a shared object's slots."""
    return len(amf0.encode(ECMAArray(data)))


def file_name(name: str) -> str:
    """The file a persistent shared object is stored in (any name is a safe file name)."""
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest() + ".so"


class SharedObjectStore:
    """The shared objects of one application."""

    _log = Logger()

    def __init__(
        self,
        app: str,
        limits: SharedObjectLimits = SharedObjectLimits(),
        directory: Path | None = None,
    ) -> None:
        self.app = app
        self.limits = limits
        #: Where persistent objects are written; None keeps them in memory only.
        self.directory = directory / _safe_dir(app) if directory is not None else None
        self._objects: dict[str, SharedObject] = {}
        self._uses: dict[Subscriber, set[str]] = {}
        self._on_disk: set[str] = set()
        if self.directory is not None and self.directory.is_dir():
            self._on_disk = {p.name for p in self.directory.glob("*.so")}

    # -- looking up ---------------------------------------------------------------------

    def names(self) -> list[str]:
        """The names of the shared objects in memory now."""
        return sorted(self._objects)

    def _count(self) -> int:
        transient = sum(1 for so in self._objects.values() if not so.persistent)
        persistent = self._on_disk | {
            file_name(so.name) for so in self._objects.values() if so.persistent
        }
        return transient + len(persistent)

    def get(self, name: str, persistent: bool) -> SharedObject:
        """The shared object ``name``, loaded or created; SharedObjectRefused if impossible."""
        existing = self._objects.get(name)
        if existing is not None:
            if existing.persistent != persistent:
                raise SharedObjectRefused(
                    BAD_PERSISTENCE,
                    f"{name} is {'' if existing.persistent else 'not '}persistent",
                )
            return existing
        if not name or len(name) > self.limits.max_name_length:
            raise SharedObjectRefused(CREATION_FAILED, "empty or too long shared object name")
        loaded = self._load(name) if persistent else None
        if loaded is None:
            if self._count() >= self.limits.max_objects:
                raise SharedObjectRefused(
                    CREATION_FAILED, f"{self.app} has {self.limits.max_objects} shared objects"
                )
            loaded = SharedObject(name, persistent)
        self._objects[name] = loaded
        return loaded

    def _discard_if_unused(self, so: SharedObject) -> None:
        if not so.subscribers and not so.pinned and self._objects.get(so.name) is so:
            del self._objects[so.name]

    # -- client requests ------------------------------------------------------------------

    def use(self, subscriber: Subscriber, name: str, persistent: bool, type_id: int) -> None:
        """Subscribe; send Use Success, Clear (transient) and all slots at the current version."""
        uses = self._uses.setdefault(subscriber, set())
        if name not in uses and len(uses) >= self.limits.max_uses_per_client:
            raise SharedObjectRefused(
                CREATION_FAILED, f"a client may use {self.limits.max_uses_per_client} objects"
            )
        so = self.get(name, persistent)
        so.subscribers[subscriber] = type_id
        uses.add(name)
        events = [SOEvent(SOEventType.USE_SUCCESS)]
        if not so.persistent:
            events.append(SOEvent(SOEventType.CLEAR))
        if so.data:
            events.append(SOEvent(SOEventType.CHANGE, pairs=tuple(so.data.items())))
        subscriber.deliver_shared_object(
            SharedObjectMessage(so.name, so.version, so.persistent, tuple(events), type_id)
        )

    def release(self, subscriber: Subscriber, name: str) -> None:
        """Unsubscribe; a transient object nobody uses is discarded."""
        uses = self._uses.get(subscriber)
        if uses is not None:
            uses.discard(name)
            if not uses:
                del self._uses[subscriber]
        so = self._objects.get(name)
        if so is None:
            return
        so.subscribers.pop(subscriber, None)
        self._discard_if_unused(so)

    def release_all(self, subscriber: Subscriber) -> None:
        """The client left: release everything it used."""
        for name in sorted(self._uses.get(subscriber, set())):
            self.release(subscriber, name)

    def subscribed(self, subscriber: Subscriber, name: str) -> SharedObject:
        """The object ``name`` if ``subscriber`` uses it; SharedObjectRefused otherwise."""
        so = self._objects.get(name)
        if so is None or subscriber not in so.subscribers:
            raise SharedObjectRefused(NO_WRITE_ACCESS, f"{name} is not in use by this client")
        return so

    # -- changes (from clients or the application) ----------------------------------------

    def change(
        self, so: SharedObject, pairs: list[tuple[str, object]], requester: Subscriber | None
    ) -> None:
        """Set slots: one version bump, Success to the requester, Change to the others."""
        if not pairs:
            return
        data = dict(so.data)
        data.update(pairs)
        if len(data) > self.limits.max_slots:
            raise SharedObjectRefused(
                NO_WRITE_ACCESS,
                f"{so.name} would have {len(data)} slots (most {self.limits.max_slots})",
            )
        try:
            size = encoded_size(data)
        except ProtocolError as error:
            raise SharedObjectRefused(NO_WRITE_ACCESS, f"unencodable value: {error}") from None
        if size > self.limits.max_bytes:
            raise SharedObjectRefused(
                NO_WRITE_ACCESS, f"{so.name} would be {size} bytes (most {self.limits.max_bytes})"
            )
        so.data = data
        so.version += 1
        self._save(so)
        keys = list(dict(pairs))
        changed = tuple((key, data[key]) for key in keys)
        for subscriber, type_id in list(so.subscribers.items()):
            if subscriber is requester:
                events = tuple(SOEvent(SOEventType.SUCCESS, key=key) for key in keys)
            else:
                events = (SOEvent(SOEventType.CHANGE, pairs=changed),)
            self._deliver(so, subscriber, type_id, events)

    def remove(self, so: SharedObject, keys: list[str]) -> None:
        """Delete slots: one version bump, Remove to everyone."""
        present = [key for key in dict.fromkeys(keys) if key in so.data]
        if not present:
            return
        for key in present:
            del so.data[key]
        so.version += 1
        self._save(so)
        events = tuple(SOEvent(SOEventType.REMOVE, key=key) for key in present)
        for subscriber, type_id in list(so.subscribers.items()):
            self._deliver(so, subscriber, type_id, events)

    def clear(self, so: SharedObject) -> None:
        """Delete every slot: one version bump, Clear to everyone."""
        so.data = {}
        so.version += 1
        self._save(so)
        for subscriber, type_id in list(so.subscribers.items()):
            self._deliver(so, subscriber, type_id, (SOEvent(SOEventType.CLEAR),))

    def send(self, so: SharedObject, arguments: tuple[object, ...]) -> None:
        """``so.send(handler, args...)``: relay to every subscriber, the sender included."""
        event = SOEvent(SOEventType.SEND_MESSAGE, arguments=arguments)
        for subscriber, type_id in list(so.subscribers.items()):
            self._deliver(so, subscriber, type_id, (event,))

    def refuse(
        self, subscriber: Subscriber, name: str, persistent: bool, type_id: int, code: str
    ) -> None:
        """Tell ``subscriber`` a request on ``name`` failed (a Status event, level error)."""
        so = self._objects.get(name)
        message = SharedObjectMessage(
            name,
            so.version if so is not None else 0,
            persistent,
            (SOEvent(SOEventType.STATUS, key=code, level="error"),),
            type_id,
        )
        subscriber.deliver_shared_object(message)

    def _deliver(
        self,
        so: SharedObject,
        subscriber: Subscriber,
        type_id: int,
        events: tuple[SOEvent, ...],
    ) -> None:
        message = SharedObjectMessage(so.name, so.version, so.persistent, events, type_id)
        try:
            subscriber.deliver_shared_object(message)
        except Exception:
            self._log.failure(
                "Delivering shared object {app}/{name} failed; dropping the subscriber",
                app=self.app,
                name=so.name,
            )
            so.subscribers.pop(subscriber, None)

    # -- persistence ---------------------------------------------------------------------

    def _path(self, name: str) -> Path | None:
        return self.directory / file_name(name) if self.directory is not None else None

    def _load(self, name: str) -> SharedObject | None:
        path = self._path(name)
        if path is None or not path.is_file():
            return None
        try:
            values = amf0.decode(path.read_bytes())
            magic, fmt, stored_name, version, data = values
            if (
                magic != FILE_MAGIC
                or fmt != FILE_FORMAT
                or stored_name != name
                or not isinstance(version, float)
                or not isinstance(data, dict)
            ):
                raise ValueError("not a flashstream shared object file")
        except (OSError, ValueError, ProtocolError) as error:
            self._log.error(
                "Cannot restore shared object {app}/{name} from {path}: {error}; starting empty",
                app=self.app,
                name=name,
                path=str(path),
                error=error,
            )
            return None
        self._log.info(
            "Restored shared object {app}/{name} at version {version}",
            app=self.app,
            name=name,
            version=int(version),
        )
        return SharedObject(name, True, int(version), dict(data))

    def _save(self, so: SharedObject) -> None:
        path = self._path(so.name) if so.persistent else None
        if path is None:
            return
        payload = amf0.encode(
            FILE_MAGIC, FILE_FORMAT, so.name, float(so.version), ECMAArray(so.data)
        )
        try:
            write_atomically(path, payload)
        except OSError as error:
            self._log.error(
                "Cannot store shared object {app}/{name} in {path}: {error}",
                app=self.app,
                name=so.name,
                path=str(path),
                error=error,
            )
            return
        self._on_disk.add(path.name)


def write_atomically(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _safe_dir(app: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in app).strip(".")
    return cleaned or "_"


#: The message types a subscriber may use.
SO_TYPES = (MessageType.SHARED_OBJECT_AMF0, MessageType.SHARED_OBJECT_AMF3)
