"""Hypothesis strategies for Flower messages, and the equality to compare them by.

Transports, the wire codec and the conformance kit all need the same thing from a property
test: every kind of message Flower can build, including the corners (``bool`` vs ``int``,
``bytes`` values, empty lists, NaN, 0-d and empty arrays, errors without a reason, uint64 node
ids), and a way to say two messages are the same. Flower's ``Message`` has no value equality,
so :func:`canonical_message` turns one into plain nested tuples that compare exactly (value
types included, floats by their bits so that NaN equals itself).

The generated values respect Flower's own rules (read from ``flwr.app``): record values are
``int``/``float``/``str``/``bytes``/``bool`` or homogeneous lists of one of them (metrics:
``int``/``float`` only), integers in values and error codes are sint64 as in Flower's protobuf
schema, node/run/task ids are uint64, and message types are ``train``, ``evaluate``, ``query``
or ``system``, optionally followed by ``.<identifier>``, or one of Flower's legacy types.

Importing this module needs ``hypothesis`` (a test dependency), so ``syft_flwr.testing`` does
not import it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
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
from flwr.common.constant import ErrorCode, MessageTypeLegacy
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from syft_flwr.message_factory import message_with_metadata
from syft_flwr.stop_signal import STOP_GROUP_ID, SYSTEM_MESSAGE_TYPE, build_stop_content

__all__ = [
    "METADATA_FIELDS",
    "NUMPY_DTYPES",
    "array_records",
    "arrays",
    "canonical_message",
    "config_records",
    "config_values",
    "errors",
    "message_types",
    "messages",
    "metadatas",
    "metric_records",
    "metric_values",
    "ndarrays",
    "record_dicts",
    "record_keys",
    "stop_signals",
]

NUMPY_DTYPES: tuple[str, ...] = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
)
"""The NumPy dtypes :func:`ndarrays` draws from by default."""

METADATA_FIELDS: tuple[str, ...] = (
    "run_id",
    "message_id",
    "src_node_id",
    "dst_node_id",
    "reply_to_message_id",
    "group_id",
    "created_at",
    "ttl",
    "message_type",
    "src_task_id",
    "dst_task_id",
    "delivered_at",
)
"""Every field of Flower's ``Metadata`` that a message carries, in Flower's order."""

_SINT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_UINT64 = st.integers(min_value=0, max_value=2**64 - 1)
_CATEGORIES = ("train", "evaluate", "query", SYSTEM_MESSAGE_TYPE)
_LEGACY_TYPES = (MessageTypeLegacy.GET_PARAMETERS, MessageTypeLegacy.GET_PROPERTIES, "reconnect")
_ERROR_CODES = tuple(
    value for name, value in vars(ErrorCode).items() if name.isupper() and isinstance(value, int)
)


def ndarrays(
    *, dtypes: Sequence[str] = NUMPY_DTYPES, max_dims: int = 4, max_side: int = 4
) -> st.SearchStrategy[np.ndarray[Any, Any]]:
    """NumPy arrays of ``dtypes``, from 0-d to ``max_dims`` dimensions, empty ones included."""
    shapes = hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side)
    return st.sampled_from(tuple(dtypes)).flatmap(lambda dtype: hnp.arrays(np.dtype(dtype), shapes))


def arrays(
    *,
    dtypes: Sequence[str] = NUMPY_DTYPES,
    max_dims: int = 4,
    max_side: int = 4,
    raw: bool = True,
) -> st.SearchStrategy[Array]:
    """Flower ``Array``s built from :func:`ndarrays` the way Flower builds them.

    With ``raw`` (the default) also arrays built field by field with arbitrary dtype and stype
    strings, shapes and data, because a transport must carry an ``Array`` it does not
    understand (Flower checks only the field types).
    """
    from_numpy = ndarrays(dtypes=dtypes, max_dims=max_dims, max_side=max_side).map(Array)
    if not raw:
        return from_numpy
    from_fields = st.builds(
        _raw_array,
        dtype=st.text(max_size=10),
        shape=st.lists(st.integers(min_value=0, max_value=2**31 - 1), max_size=max_dims),
        stype=st.text(max_size=16),
        data=st.binary(max_size=64),
    )
    return st.one_of(from_numpy, from_fields)


def _raw_array(dtype: str, shape: list[int], stype: str, data: bytes) -> Array:
    return Array(dtype=dtype, shape=tuple(shape), stype=stype, data=data)


def record_keys(*, max_size: int = 12) -> st.SearchStrategy[str]:
    """Keys of records and record dicts: any ``str``, the empty one included."""
    return st.text(max_size=max_size)


def _with_lists(scalars: Sequence[st.SearchStrategy[Any]], max_list: int) -> st.SearchStrategy[Any]:
    return st.one_of(*scalars, *(st.lists(scalar, max_size=max_list) for scalar in scalars))


def metric_values(*, max_list: int = 5) -> st.SearchStrategy[Any]:
    """``MetricRecord`` values: sint64 ``int``, ``float`` (NaN and infinities too), or lists."""
    return _with_lists([_SINT64, st.floats()], max_list)


def config_values(*, max_list: int = 5) -> st.SearchStrategy[Any]:
    """``ConfigRecord`` values: metric values plus ``bool``, ``str``, ``bytes`` and their lists."""
    scalars = [st.booleans(), _SINT64, st.floats(), st.text(max_size=16), st.binary(max_size=16)]
    return _with_lists(scalars, max_list)


def array_records(
    *, max_size: int = 3, elements: st.SearchStrategy[Array] | None = None
) -> st.SearchStrategy[ArrayRecord]:
    """``ArrayRecord``s of up to ``max_size`` arrays (default element strategy :func:`arrays`)."""
    values = arrays() if elements is None else elements
    entries = st.dictionaries(record_keys(), values, max_size=max_size)
    return entries.map(_array_record)


def _array_record(entries: dict[str, Array]) -> ArrayRecord:
    record = ArrayRecord()
    for key, array in entries.items():
        record[key] = array
    return record


def config_records(*, max_size: int = 5) -> st.SearchStrategy[ConfigRecord]:
    """``ConfigRecord``s of up to ``max_size`` entries of :func:`config_values`."""
    return st.dictionaries(record_keys(), config_values(), max_size=max_size).map(ConfigRecord)


def metric_records(*, max_size: int = 5) -> st.SearchStrategy[MetricRecord]:
    """``MetricRecord``s of up to ``max_size`` entries of :func:`metric_values`."""
    return st.dictionaries(record_keys(), metric_values(), max_size=max_size).map(MetricRecord)


def record_dicts(*, max_records: int = 4) -> st.SearchStrategy[RecordDict]:
    """``RecordDict``s mixing all three record types, the empty one included."""
    records = st.one_of(array_records(), config_records(), metric_records())
    return st.dictionaries(record_keys(), records, max_size=max_records).map(RecordDict)


def errors() -> st.SearchStrategy[Error]:
    """Flower ``Error``s: Flower's own codes or any sint64, with a reason or ``None``."""
    codes = st.one_of(st.sampled_from(_ERROR_CODES), _SINT64)
    return st.builds(Error, code=codes, reason=st.none() | st.text(max_size=64))


def message_types() -> st.SearchStrategy[str]:
    """Every shape of message type Flower's ``Metadata`` accepts."""
    categories = st.sampled_from(_CATEGORIES)
    actions = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True)
    return st.one_of(
        categories,
        st.builds("{}.{}".format, categories, actions),
        st.sampled_from(_LEGACY_TYPES),
    )


def metadatas(
    *,
    message_type: st.SearchStrategy[str] | None = None,
    group_id: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[Metadata]:
    """Flower ``Metadata`` with uint64 ids, optional task ids, and int or float TTLs.

    ``created_at`` is a plausible Unix time and ``ttl`` positive, so that transports that act
    on them (expiry) can use these too; pass ``message_type``/``group_id`` to pin those.
    """
    return st.builds(
        Metadata,
        run_id=_UINT64,
        message_id=st.text(max_size=40),
        src_node_id=_UINT64,
        dst_node_id=_UINT64,
        reply_to_message_id=st.text(max_size=40),
        group_id=st.text(max_size=16) if group_id is None else group_id,
        created_at=st.floats(min_value=0.0, max_value=4_102_444_800.0),
        ttl=st.one_of(
            st.floats(min_value=1e-3, max_value=1e7), st.integers(min_value=1, max_value=10**7)
        ),
        message_type=message_types() if message_type is None else message_type,
        src_task_id=st.none() | _UINT64,
        dst_task_id=st.none() | _UINT64,
    )


def messages(
    *,
    content: st.SearchStrategy[RecordDict] | None = None,
    error: st.SearchStrategy[Error] | None = None,
    metadata: st.SearchStrategy[Metadata] | None = None,
) -> st.SearchStrategy[Message]:
    """Flower ``Message``s carrying content or an error, with any ``delivered_at``.

    Built the way Flower's own deserializer builds them (``Message(..., metadata=...)``), so no
    process-global ``TaskIdentity`` is needed.
    """
    body = st.one_of(
        record_dicts() if content is None else content, errors() if error is None else error
    )
    return st.builds(
        _message,
        body,
        metadatas() if metadata is None else metadata,
        delivered_at=st.just("") | st.text(max_size=32),
    )


def _message(body: RecordDict | Error, metadata: Metadata, *, delivered_at: str) -> Message:
    if isinstance(body, Error):
        message = message_with_metadata(metadata, error=body)
    else:
        message = message_with_metadata(metadata, content=body)
    message.metadata.delivered_at = delivered_at
    return message


def stop_signals(*, reasons: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Message]:
    """Stop signals by the documented schema: type ``system``, group ``final``, the stop config."""
    metadata = metadatas(message_type=st.just(SYSTEM_MESSAGE_TYPE), group_id=st.just(STOP_GROUP_ID))
    content = (st.text(max_size=64) if reasons is None else reasons).map(build_stop_content)
    return messages(content=content, metadata=metadata, error=st.nothing())


def canonical_message(message: Message) -> tuple[Any, ...]:
    """``message`` as nested tuples that are equal exactly when the messages are the same.

    Covers every metadata field, content or error, record order and key order, value types
    (``True`` differs from ``1``, ``1`` from ``1.0``), floats by their bits, and each array's
    dtype, shape, stype and data.
    """
    metadata = tuple(
        (name, _canonical_value(getattr(message.metadata, name))) for name in METADATA_FIELDS
    )
    if message.has_error():
        body: tuple[Any, ...] = (
            "error",
            _canonical_value(message.error.code),
            _canonical_value(message.error.reason),
        )
    else:
        body = (
            "content",
            tuple((name, _canonical_record(record)) for name, record in message.content.items()),
        )
    return metadata, body


def _canonical_record(record: ArrayRecord | ConfigRecord | MetricRecord) -> tuple[Any, ...]:
    if isinstance(record, ArrayRecord):
        return (
            "array",
            tuple(
                (
                    key,
                    _canonical_value(array.dtype),
                    tuple(_canonical_value(dim) for dim in array.shape),
                    _canonical_value(array.stype),
                    _canonical_value(array.data),
                )
                for key, array in record.items()
            ),
        )
    kind = "config" if isinstance(record, ConfigRecord) else "metric"
    return kind, tuple((key, _canonical_value(value)) for key, value in record.items())


def _canonical_value(value: object) -> tuple[Any, ...]:
    if isinstance(value, list):
        return "list", tuple(_canonical_value(item) for item in value)
    if isinstance(value, float):
        return "float", struct.pack(">d", value)
    return type(value).__name__, value
