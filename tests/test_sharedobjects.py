# -*- test-case-name: tests.test_sharedobjects -*-
"""Tests for :mod:`flashstream.sharedobjects`: versions, fan-out, limits, persistence."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from flashstream.config import SharedObjectLimits
from flashstream.rtmp.sharedobject import SharedObjectMessage, SOEventType
from flashstream.sharedobjects import (
    BAD_PERSISTENCE,
    CREATION_FAILED,
    NO_WRITE_ACCESS,
    SharedObjectRefused,
    SharedObjectStore,
    file_name,
)

AMF0 = 19


class Sub:
    """A subscriber that keeps what it is sent."""

    def __init__(self) -> None:
        self.got: list[SharedObjectMessage] = []

    def deliver_shared_object(self, message: SharedObjectMessage) -> None:
        """Keep it."""
        self.got.append(message)

    def kinds(self) -> list[list[SOEventType]]:
        """Event kinds of each message."""
        return [[e.kind for e in m.events] for m in self.got]


class StoreTests(SynchronousTestCase):
    """One store, in memory or on a temporary folder."""

    def setUp(self) -> None:
        """A temporary folder."""
        self.dir = Path(tempfile.mkdtemp(prefix="flashstream-so-"))
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_versions_and_fan_out(self) -> None:
        """One bump per change; Success to the requester, Change to others; Remove to all."""
        store = SharedObjectStore("app")
        a, b = Sub(), Sub()
        store.use(a, "so", False, AMF0)
        store.use(b, "so", False, AMF0)
        so = store.subscribed(a, "so")
        store.change(so, [("x", 1.0), ("y", 2.0)], a)
        self.assertEqual(a.got[-1].version, 1)
        self.assertEqual(a.kinds()[-1], [SOEventType.SUCCESS, SOEventType.SUCCESS])
        self.assertEqual(b.kinds()[-1], [SOEventType.CHANGE])
        self.assertEqual(b.got[-1].version, 1)
        store.remove(so, ["x", "missing"])
        self.assertEqual([m.version for m in (a.got[-1], b.got[-1])], [2, 2])
        store.remove(so, ["missing"])  # nothing to remove: no bump, no message
        self.assertEqual(so.version, 2)
        store.clear(so)
        self.assertEqual((so.version, so.data), (3, {}))
        store.release(a, "so")
        store.release(b, "so")
        self.assertEqual(store.names(), [])

    def test_limits(self) -> None:
        """Objects, slots, bytes, uses per client and name length are bounded."""
        limits = SharedObjectLimits(
            max_objects=2, max_slots=2, max_bytes=40, max_uses_per_client=2, max_name_length=5
        )
        store = SharedObjectStore("app", limits)
        a = Sub()
        store.use(a, "one", False, AMF0)
        store.use(a, "two", False, AMF0)
        with self.assertRaises(SharedObjectRefused) as uses:
            store.use(a, "three", False, AMF0)
        self.assertEqual(uses.exception.code, CREATION_FAILED)
        with self.assertRaises(SharedObjectRefused):
            store.get("three", False)  # max_objects
        with self.assertRaises(SharedObjectRefused):
            store.get("toolongname", False)
        so = store.subscribed(a, "one")
        with self.assertRaises(SharedObjectRefused) as slots:
            store.change(so, [("a", 1.0), ("b", 1.0), ("c", 1.0)], a)
        self.assertEqual(slots.exception.code, NO_WRITE_ACCESS)
        with self.assertRaises(SharedObjectRefused):
            store.change(so, [("a", "x" * 50)], a)
        self.assertEqual((so.data, so.version), ({}, 0))
        with self.assertRaises(SharedObjectRefused) as persistence:
            store.get("one", True)
        self.assertEqual(persistence.exception.code, BAD_PERSISTENCE)

    def test_persistence(self) -> None:
        """A persistent object is written atomically and restored with its version."""
        first = SharedObjectStore("app", directory=self.dir)
        a = Sub()
        first.use(a, "scores/room 1", True, AMF0)
        so = first.subscribed(a, "scores/room 1")
        first.change(so, [("alice", 3.0)], a)
        first.change(so, [("bob", {"wins": 2.0})], a)
        folder = self.dir / "app"
        self.assertEqual([p.name for p in folder.iterdir()], [file_name("scores/room 1")])
        second = SharedObjectStore("app", directory=self.dir)
        b = Sub()
        second.use(b, "scores/room 1", True, AMF0)
        (use,) = b.got
        self.assertEqual(use.version, 2)
        self.assertEqual(use.events[-1].pairs, (("alice", 3.0), ("bob", {"wins": 2.0})))
        self.assertNotIn(SOEventType.CLEAR, [e.kind for e in use.events])

    def test_corrupt_file_starts_empty(self) -> None:
        """An unreadable file is logged and the object starts empty."""
        folder = self.dir / "app"
        folder.mkdir()
        (folder / file_name("so")).write_bytes(b"\x02\x00\x03abc")
        store = SharedObjectStore("app", directory=self.dir)
        so = store.get("so", True)
        self.assertEqual((so.data, so.version), ({}, 0))
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_persistent_objects_count_towards_the_limit(self) -> None:
        """Objects stored on disk count, even when nobody uses them."""
        store = SharedObjectStore("app", SharedObjectLimits(max_objects=1), self.dir)
        a = Sub()
        store.use(a, "kept", True, AMF0)
        store.change(store.subscribed(a, "kept"), [("k", 1.0)], a)
        store.release(a, "kept")
        with self.assertRaises(SharedObjectRefused):
            store.get("new", False)
        self.assertEqual(store.get("kept", True).data, {"k": 1.0})

    def test_failing_subscriber_is_dropped(self) -> None:
        """A subscriber that raises is logged and removed; the others still get messages."""
        store = SharedObjectStore("app")
        good = Sub()

        class Bad(Sub):
            def deliver_shared_object(self, message: SharedObjectMessage) -> None:
                if self.got:
                    raise RuntimeError("gone")
                self.got.append(message)

        bad = Bad()
        store.use(bad, "so", False, AMF0)
        store.use(good, "so", False, AMF0)
        so = store.subscribed(good, "so")
        store.change(so, [("k", 1.0)], good)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertNotIn(bad, so.subscribers)
        self.assertEqual(good.kinds()[-1], [SOEventType.SUCCESS])
