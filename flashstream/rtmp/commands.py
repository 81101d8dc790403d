# -*- test-case-name: tests.rtmp.test_commands -*-
"""
Command (types 20/17) and data (types 18/15) message payloads (rtmp-protocol.md 5.3, 6.1, 7).

A command is ``name, transaction id, command object, arguments...``; a data message is
``handler, arguments...``.  The AMF3 types (17, 15) carry one leading ``00`` byte and then AMF0
values that may switch to AMF3 with ``11``; a payload that does not start with ``00`` is decoded
from its first byte (some encoders omit it, and a valid payload never starts with an AMF0
Number).  We always encode AMF0 payloads, for types 20 and 18, as nginx-rtmp does.
"""

from __future__ import annotations

from typing import Final

import attrs

from flashstream.rtmp import amf0
from flashstream.rtmp.amf_types import DEFAULT_LIMITS
from flashstream.rtmp.errors import LocalProtocolError, MessageError
from flashstream.rtmp.limits import Limits

__all__ = [
    "COMMAND_AMF0",
    "COMMAND_AMF3",
    "DATA_AMF0",
    "DATA_AMF3",
    "Command",
    "DataMessage",
    "decode_command",
    "decode_data",
    "encode_command",
    "encode_data",
]

COMMAND_AMF0: Final = 20
COMMAND_AMF3: Final = 17
DATA_AMF0: Final = 18
DATA_AMF3: Final = 15


@attrs.frozen
class Command:
    """An RPC: ``connect``, ``createStream``, ``publish``, ``_result``, ``onStatus``..."""

    name: str
    transaction_id: float
    command_object: object  # usually a dict or None
    arguments: tuple[object, ...] = ()


@attrs.frozen
class DataMessage:
    """A data message: ``@setDataFrame``, ``onMetaData``, ``|RtmpSampleAccess``, ``onStatus``..."""

    name: str
    arguments: tuple[object, ...] = ()


def _decode_values(
    type_id: int, payload: bytes, amf0_type: int, amf3_type: int, limits: Limits
) -> list[object]:
    if type_id == amf3_type:
        if payload[:1] == b"\x00":
            payload = payload[1:]
    elif type_id != amf0_type:
        raise LocalProtocolError(f"message type {type_id} is not {amf0_type} or {amf3_type}")
    return amf0.decode(payload, limits)


def decode_command(type_id: int, payload: bytes, limits: Limits = DEFAULT_LIMITS) -> Command:
    """The command in a type 20 or 17 message payload."""
    values = _decode_values(type_id, payload, COMMAND_AMF0, COMMAND_AMF3, limits)
    if not values or not isinstance(values[0], str):
        raise MessageError(f"command name is not a string: {values[:1]!r}")
    name = values[0]
    if len(values) < 2:
        raise MessageError(f"command {name!r} has no transaction id")
    transaction_id = values[1]
    if isinstance(transaction_id, bool) or not isinstance(transaction_id, (int, float)):
        raise MessageError(f"command {name!r} transaction id is not a number: {transaction_id!r}")
    command_object = values[2] if len(values) > 2 else None
    return Command(name, float(transaction_id), command_object, tuple(values[3:]))


def encode_command(command: Command) -> bytes:
    """The AMF0 payload (message type 20) of ``command``."""
    return amf0.encode(
        command.name, float(command.transaction_id), command.command_object, *command.arguments
    )


def decode_data(type_id: int, payload: bytes, limits: Limits = DEFAULT_LIMITS) -> DataMessage:
    """The data message in a type 18 or 15 message payload."""
    values = _decode_values(type_id, payload, DATA_AMF0, DATA_AMF3, limits)
    if not values or not isinstance(values[0], str):
        raise MessageError(f"data message handler is not a string: {values[:1]!r}")
    return DataMessage(values[0], tuple(values[1:]))


def encode_data(data: DataMessage) -> bytes:
    """The AMF0 payload (message type 18) of ``data``."""
    return amf0.encode(data.name, *data.arguments)
