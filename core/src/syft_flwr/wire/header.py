"""The envelope header: a Flower ``Message`` as plain msgpack values, and back.

The header carries everything but the array payloads: the metadata, then either the error or
the records in order. msgpack keeps Flower's value types apart (``bool`` vs ``int`` vs
``float``, ``str`` vs ``bytes``), so config and metric values are written as they are. For each
array the header holds ``[dtype, shape, stype, nbytes]``; the payloads themselves follow the
header in the same order, outside msgpack, so they are never copied into it (see
:mod:`syft_flwr.wire.codec`).

Decoding trusts nothing: the envelope's own structure (maps, kinds, lengths, metadata types) is
checked here, and every record value goes through Flower's own constructors, whose
``TypeError``/``ValueError`` become :class:`~syft_flwr.errors.WireFormatError`. So the wire
accepts exactly what Flower accepts, and a hostile body can only ever raise that one error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    Metadata,
    MetricRecord,
    RecordDict,
)

from syft_flwr.errors import WireFormatError
from syft_flwr.message_factory import message_with_metadata

__all__ = ["array_sizes", "header_to_message", "message_to_header"]

T = TypeVar("T")

_TOP_KEYS = frozenset({"metadata", "content", "error"})
_ERROR_KEYS = frozenset({"code", "reason"})
_INT_FIELDS = ("run_id", "src_node_id", "dst_node_id")
_OPTIONAL_INT_FIELDS = ("src_task_id", "dst_task_id")
_STR_FIELDS = ("message_id", "reply_to_message_id", "group_id", "message_type", "delivered_at")
_NUMBER_FIELDS = ("created_at", "ttl")
_METADATA_FIELDS = frozenset(_INT_FIELDS + _OPTIONAL_INT_FIELDS + _STR_FIELDS + _NUMBER_FIELDS)

_ARRAY = "array"
_CONFIG = "config"
_METRIC = "metric"

# One array as the header describes it: (key, dtype, shape, stype, nbytes).
_ArraySpec = tuple[str, str, list[Any], str, int]


def message_to_header(message: Message) -> tuple[dict[str, Any], list[bytes]]:
    """Split ``message`` into its header and its array payloads in wire order (not copied).

    The fields Flower does not type-check (metadata, error, reassigned array attributes) are
    checked as the decoder checks them, so a sender fails here rather than its receiver later.
    """
    metadata = message.metadata
    header: dict[str, Any] = {
        "metadata": {name: getattr(metadata, name) for name in sorted(_METADATA_FIELDS)},
        "content": None,
        "error": None,
    }
    payloads: list[bytes] = []
    try:
        _check_metadata(header["metadata"])
        if message.has_error():
            header["error"] = {"code": message.error.code, "reason": message.error.reason}
            _check_error(header["error"])
        else:
            header["content"] = {
                name: _record_to_header(name, record, payloads)
                for name, record in message.content.items()
            }
    except WireFormatError as exc:
        raise WireFormatError(f"message cannot be encoded: {exc}") from exc
    return header, payloads


def _record_to_header(name: str, record: object, payloads: list[bytes]) -> list[Any]:
    if isinstance(record, ArrayRecord):
        arrays: dict[str, list[Any]] = {}
        for key, array in record.items():
            if not isinstance(array.data, bytes):
                raise WireFormatError(
                    f"array {key!r} of record {name!r}: data is "
                    f"{type(array.data).__name__}, Flower requires bytes"
                )
            payloads.append(array.data)
            arrays[key] = [array.dtype, list(array.shape), array.stype, len(array.data)]
            _array_spec(name, key, arrays[key])
        return [_ARRAY, arrays]
    if isinstance(record, ConfigRecord):
        return [_CONFIG, dict(record)]
    if isinstance(record, MetricRecord):
        return [_METRIC, dict(record)]
    raise WireFormatError(f"record {name!r} is a {type(record).__name__}, not a Flower record")


def array_sizes(header: object) -> list[int]:
    """The byte sizes of the array payloads ``header`` declares, in wire order.

    :raises WireFormatError: the header's structure is malformed.
    """
    content = _mapping(header, "header", _TOP_KEYS)["content"]
    if content is None:
        return []
    if not isinstance(content, dict):
        raise WireFormatError(f"content must be a map, got {_kind(content)}")
    parsed = [_parse_record(name, entry) for name, entry in content.items()]
    return [spec[4] for _, kind, items in parsed if kind == _ARRAY for spec in items]


def header_to_message(header: object, payload: memoryview | Sequence[bytes]) -> Message:
    """Build the Flower ``Message`` that ``header`` describes, its arrays sliced from ``payload``
    (one view), or taken as they are (one ``bytes`` per array, as :func:`array_sizes` says).

    The payload must hold exactly the bytes the header declares: fewer means a truncated body,
    more means trailing garbage. Both are rejected before any array is copied.
    """
    top = _mapping(header, "header", _TOP_KEYS)
    metadata = _metadata_from_header(top["metadata"])
    content, error = top["content"], top["error"]
    if (content is None) == (error is None):
        raise WireFormatError("header must carry exactly one of content and error")
    message: Message
    if error is not None:
        trailing = sum(map(len, payload)) if not isinstance(payload, memoryview) else len(payload)
        if trailing:
            raise WireFormatError(f"error message has {trailing} trailing payload bytes")
        failure = _error_from_header(error)
        message = message_with_metadata(metadata, error=failure)
    else:
        records = _content_from_header(content, payload)
        message = message_with_metadata(metadata, content=records)
    # Message() resets delivered_at to ""; restore what the sender had.
    message.metadata.delivered_at = top["metadata"]["delivered_at"]
    return message


def _metadata_from_header(value: object) -> Metadata:
    fields = _mapping(value, "metadata", _METADATA_FIELDS)
    _check_metadata(fields)
    kwargs = {name: fields[name] for name in _METADATA_FIELDS if name != "delivered_at"}
    return _flower("metadata", Metadata, **kwargs)


def _check_metadata(fields: dict[str, Any]) -> None:
    for name in _INT_FIELDS:
        _expect_int(fields[name], f"metadata.{name}")
    for name in _OPTIONAL_INT_FIELDS:
        if fields[name] is not None:
            _expect_int(fields[name], f"metadata.{name}")
    for name in _STR_FIELDS:
        if not isinstance(fields[name], str):
            raise WireFormatError(f"metadata.{name} must be str, got {_kind(fields[name])}")
    for name in _NUMBER_FIELDS:
        if isinstance(fields[name], bool) or not isinstance(fields[name], int | float):
            raise WireFormatError(f"metadata.{name} must be a number, got {_kind(fields[name])}")


def _error_from_header(value: object) -> Error:
    fields = _mapping(value, "error", _ERROR_KEYS)
    _check_error(fields)
    return Error(code=fields["code"], reason=fields["reason"])


def _check_error(fields: dict[str, Any]) -> None:
    _expect_int(fields["code"], "error.code")
    if fields["reason"] is not None and not isinstance(fields["reason"], str):
        raise WireFormatError(f"error.reason must be str or nil, got {_kind(fields['reason'])}")


def _content_from_header(value: object, payload: memoryview | Sequence[bytes]) -> RecordDict:
    if not isinstance(value, dict):
        raise WireFormatError(f"content must be a map, got {_kind(value)}")
    parsed = [_parse_record(name, entry) for name, entry in value.items()]
    specs = [spec for _, kind, items in parsed if kind == _ARRAY for spec in items]
    declared = sum(spec[4] for spec in specs)
    if isinstance(payload, memoryview):
        _check_payload(declared, len(payload))
        slices, offset = [], 0
        for spec in specs:
            # The one copy of each payload: a real bytes object, as Flower requires.
            slices.append(bytes(payload[offset : offset + spec[4]]))
            offset += spec[4]
        datas = iter(slices)
    else:
        if [len(frame) for frame in payload] != [spec[4] for spec in specs]:
            _check_payload(declared, sum(len(frame) for frame in payload))
            raise WireFormatError("the payload frames are not split at the header's arrays")
        datas = iter(payload)  # the arrays' own bytes, used as they are
    records: dict[str, ArrayRecord | ConfigRecord | MetricRecord] = {}
    for name, kind, items in parsed:
        if kind == _ARRAY:
            array_record = ArrayRecord()
            for key, dtype, shape, stype, _ in items:
                array_record[key] = _flower(
                    f"array {key!r} of record {name!r}",
                    Array,
                    dtype=dtype,
                    shape=tuple(shape),
                    stype=stype,
                    data=next(datas),
                )
            records[name] = array_record
        elif kind == _CONFIG:
            records[name] = _flower(f"config record {name!r}", ConfigRecord, items)
        else:
            records[name] = _flower(f"metric record {name!r}", MetricRecord, items)
    return RecordDict(records)


def _check_payload(declared: int, size: int) -> None:
    if declared > size:
        raise WireFormatError(
            f"truncated payload: header declares {declared} array bytes, body has {size}"
        )
    if declared < size:
        raise WireFormatError(
            f"{size - declared} trailing bytes after the {declared} declared array bytes"
        )


def _parse_record(name: object, entry: object) -> tuple[str, str, Any]:
    """Check one record's envelope structure; values are left to Flower's constructors."""
    if not isinstance(name, str):
        raise WireFormatError(f"record name must be str, got {_kind(name)}")
    if not (isinstance(entry, list) and len(entry) == 2):
        raise WireFormatError(f"record {name!r} must be a [kind, items] pair")
    kind, items = entry
    if kind not in (_ARRAY, _CONFIG, _METRIC):
        raise WireFormatError(f"record {name!r} has unknown kind {kind!r}")
    if not isinstance(items, dict):
        raise WireFormatError(f"items of record {name!r} must be a map, got {_kind(items)}")
    if kind == _ARRAY:
        return name, kind, [_array_spec(name, key, spec) for key, spec in items.items()]
    return name, kind, items


def _array_spec(record: str, key: object, spec: object) -> _ArraySpec:
    """Check one array's ``[dtype, shape, stype, nbytes]``; Flower checks the shape's items."""
    where = f"array {key!r} of record {record!r}"
    if not isinstance(key, str):
        raise WireFormatError(f"array key in record {record!r} must be str, got {_kind(key)}")
    if not (isinstance(spec, list) and len(spec) == 4):
        raise WireFormatError(f"{where} must be [dtype, shape, stype, nbytes]")
    dtype, shape, stype, nbytes = spec
    if not isinstance(dtype, str):
        raise WireFormatError(f"{where}: dtype must be str, got {_kind(dtype)}")
    if not isinstance(shape, list):
        raise WireFormatError(f"{where}: shape must be an array, got {_kind(shape)}")
    if not isinstance(stype, str):
        raise WireFormatError(f"{where}: stype must be str, got {_kind(stype)}")
    _expect_int(nbytes, f"{where}: nbytes")
    if nbytes < 0:
        raise WireFormatError(f"{where}: nbytes must not be negative, got {nbytes}")
    return key, dtype, shape, stype, nbytes


def _mapping(value: object, what: str, keys: frozenset[str]) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise WireFormatError(f"{what} must be a map, got {_kind(value)}")
    if value.keys() != keys:
        missing = sorted(keys - value.keys())
        unexpected = sorted(repr(k) for k in value.keys() - keys)
        raise WireFormatError(f"{what} fields wrong: missing {missing}, unexpected {unexpected}")
    return value


def _expect_int(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise WireFormatError(f"{what} must be an integer, got {_kind(value)}")


def _flower(what: str, factory: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a Flower constructor on decoded values; its validation errors mean a bad body."""
    try:
        return factory(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise WireFormatError(f"{what} is not valid for Flower: {exc}") from exc


def _kind(value: object) -> str:
    return "nil" if value is None else type(value).__name__
