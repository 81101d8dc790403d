"""
Property tests over every parser a peer feeds (:mod:`tests.fuzz_targets`):
arbitrary bytes, and valid inputs with bytes overwritten, either parse or
raise a RemoteProtocolError -- never another exception.  Bounded examples;
``bench/fuzz.py`` runs the same targets for minutes.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flashstream.rtmp.errors import RemoteProtocolError
from tests.fuzz_targets import SEEDS, TARGETS, Target

NAMES = sorted(TARGETS)


def _run(target: Target, data: bytes) -> None:
    try:
        target(data)
    except RemoteProtocolError:
        pass


def test_every_target_has_seeds_that_parse() -> None:
    """Each target's seeds are valid inputs: they run without any error at all."""
    assert set(SEEDS) == set(TARGETS)
    for name, seeds in SEEDS.items():
        for seed in seeds:
            TARGETS[name](seed)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=150)
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes(name: str, data: bytes) -> None:
    """Arbitrary bytes give a result or a RemoteProtocolError."""
    _run(TARGETS[name], data)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=150)
@given(data=st.data())
def test_mutated_seeds(name: str, data: st.DataObject) -> None:
    """A valid input with bytes overwritten, cut or extended: a result or a RemoteProtocolError."""
    seed = bytearray(data.draw(st.sampled_from(SEEDS[name]), label="seed"))
    changes = data.draw(
        st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)), max_size=8),
        label="changes",
    )
    for index, value in changes:
        seed[index] = value
    cut = data.draw(st.integers(0, len(seed)), label="cut")
    tail = data.draw(st.binary(max_size=32), label="tail")
    _run(TARGETS[name], bytes(seed[:cut]) + tail)
