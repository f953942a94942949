"""Unit tests of the wire codec: fidelity of every Flower type, framing, and strict decoding."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, cast

import msgpack  # type: ignore[import-untyped]
import numpy as np
import pytest
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
from syft_flwr.stop_signal import (
    STOP_GROUP_ID,
    SYSTEM_MESSAGE_TYPE,
    build_stop_content,
    stop_reason,
)
from syft_flwr.testing.strategies import NUMPY_DTYPES, canonical_message
from syft_flwr.wire import (
    MAGIC,
    WIRE_VERSION,
    decode_message,
    encode_message,
    encode_message_frames,
    encoded_size,
)

PREFIX = struct.Struct(">4sBI")


def make_metadata(**overrides: Any) -> Metadata:
    fields: dict[str, Any] = {
        "run_id": 7,
        "message_id": "msg-1",
        "src_node_id": 1,
        "dst_node_id": 2**64 - 1,
        "reply_to_message_id": "",
        "group_id": "3",
        "created_at": 1_700_000_000.25,
        "ttl": 60.0,
        "message_type": "train",
    }
    fields.update(overrides)
    return Metadata(**fields)


def make_message(content: RecordDict | Error, **metadata: Any) -> Message:
    fields = make_metadata(**metadata)
    message: Message = Message(content, metadata=fields)  # type: ignore[call-overload]
    return message


def roundtrip(message: Message) -> Message:
    decoded = decode_message(encode_message(message))
    assert canonical_message(decoded) == canonical_message(message)
    return decoded


def rich_message() -> Message:
    return make_message(
        RecordDict(
            {
                "params": ArrayRecord(
                    {
                        "w": Array(np.arange(6, dtype=np.float32).reshape(2, 3)),
                        "b": Array(np.ones(2)),
                    }
                ),
                "cfg": ConfigRecord(
                    {"lr": 0.1, "epochs": 3, "on": True, "tag": "x", "blob": b"\0"}
                ),
                "metrics": MetricRecord({"acc": 0.9, "n": [1, 2, 3]}),
            }
        )
    )


def envelope(header: object, payload: bytes = b"", *, version: int = WIRE_VERSION) -> bytes:
    packed: bytes = msgpack.packb(header, use_bin_type=True)
    return PREFIX.pack(MAGIC, version, len(packed)) + packed + payload


def split(data: bytes) -> tuple[dict[str, Any], bytes]:
    _, _, length = PREFIX.unpack_from(data)
    header = msgpack.unpackb(data[PREFIX.size : PREFIX.size + length], raw=False)
    return header, data[PREFIX.size + length :]


def mutated(mutate: Callable[[dict[str, Any]], object], message: Message | None = None) -> bytes:
    """A valid encoding of ``message`` whose header was changed in place by ``mutate``."""
    header, payload = split(encode_message(message or rich_message()))
    mutate(header)
    return envelope(header, payload)


# --- fidelity -------------------------------------------------------------------------------


def test_config_values_keep_their_exact_types() -> None:
    values: dict[str, Any] = {
        "true": True,
        "one": 1,
        "one_float": 1.0,
        "zero": 0,
        "false": False,
        "neg": -(2**63),
        "max": 2**63 - 1,
        "nan": float("nan"),
        "inf": float("-inf"),
        "neg_zero": -0.0,
        "text": "héllo",
        "empty_text": "",
        "blob": b"\x00\xff",
        "empty_blob": b"",
        "bools": [True, False],
        "ints": [1, 2, 3],
        "floats": [0.5, 1.0],
        "texts": ["a", ""],
        "blobs": [b"a", b""],
        "empty_list": [],
        "int_then_bool": [1, True],  # Flower accepts it (bool is an int); keep it as given
    }
    decoded = roundtrip(make_message(RecordDict({"c": ConfigRecord(values)})))
    record = decoded.content.config_records["c"]
    assert list(record.keys()) == list(values)
    assert [type(v) for v in record.values()] == [type(v) for v in values.values()]
    assert [type(v) for v in cast(list[Any], record["int_then_bool"])] == [int, bool]


def test_metric_values_keep_their_exact_types() -> None:
    values: dict[str, Any] = {"i": 3, "f": 3.0, "ints": [1], "floats": [1.5], "empty": []}
    decoded = roundtrip(make_message(RecordDict({"m": MetricRecord(values)})))
    record = decoded.content.metric_records["m"]
    assert isinstance(record, MetricRecord)
    assert [(k, type(v)) for k, v in record.items()] == [(k, type(v)) for k, v in values.items()]


@pytest.mark.parametrize("dtype", NUMPY_DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (3, 0), (5,), (2, 3, 4)])
def test_arrays_of_every_dtype_and_shape(dtype: str, shape: tuple[int, ...]) -> None:
    ndarray = (np.arange(int(np.prod(shape))) % 3).astype(dtype).reshape(shape)
    decoded = roundtrip(make_message(RecordDict({"a": ArrayRecord({"x": Array(ndarray)})})))
    array = decoded.content.array_records["a"]["x"]
    assert type(array.data) is bytes
    np.testing.assert_array_equal(array.numpy(), ndarray)
    assert array.numpy().dtype == ndarray.dtype


def test_array_fields_are_carried_verbatim() -> None:
    array = Array(dtype="bfloat16", shape=(4, 1), stype="torch.raw", data=b"\x01\x02" * 4)
    decoded = roundtrip(make_message(RecordDict({"a": ArrayRecord({"opaque": array})})))
    assert decoded.content.array_records["a"]["opaque"] == array


def test_many_records_keep_their_order() -> None:
    records: dict[str, Any] = {}
    for i in range(60):
        kind = i % 3
        if kind == 0:
            records[f"r{59 - i}"] = ArrayRecord([np.full(i, i, dtype=np.int16)])
        elif kind == 1:
            records[f"r{59 - i}"] = ConfigRecord({f"k{j}": j for j in range(i % 5)})
        else:
            records[f"r{59 - i}"] = MetricRecord({"v": float(i)})
    decoded = roundtrip(make_message(RecordDict(records)))
    assert list(decoded.content.keys()) == list(records)


def test_empty_content_and_empty_records() -> None:
    roundtrip(make_message(RecordDict()))
    roundtrip(
        make_message(RecordDict({"": ArrayRecord(), "c": ConfigRecord(), "m": MetricRecord()}))
    )


@pytest.mark.parametrize("reason", [None, "", "Traceback ...\nValueError: boom"])
def test_error_messages(reason: str | None) -> None:
    decoded = roundtrip(make_message(Error(code=2, reason=reason), message_type="evaluate"))
    assert decoded.has_error() and not decoded.has_content()
    assert decoded.error.reason == reason


def test_metadata_is_carried_exactly() -> None:
    message = make_message(
        RecordDict(),
        run_id=2**64 - 1,
        src_task_id=5,
        dst_task_id=None,
        ttl=30,  # int TTLs happen (Message(ttl=30)) and stay int
        created_at=float("inf"),
        message_type="query.custom_action",
    )
    message.metadata.delivered_at = "2026-01-01T00:00:00Z"
    decoded = roundtrip(message)
    assert decoded.metadata == message.metadata
    assert type(decoded.metadata.ttl) is int


def test_stop_signal_round_trip() -> None:
    message = make_message(
        build_stop_content("run finished"), message_type=SYSTEM_MESSAGE_TYPE, group_id=STOP_GROUP_ID
    )
    assert stop_reason(roundtrip(message)) == "run finished"


def test_decodes_bytearray_and_memoryview() -> None:
    data = encode_message(rich_message())
    for buffer in (bytearray(data), memoryview(data), memoryview(b"junk" + data)[4:]):
        assert canonical_message(decode_message(buffer)) == canonical_message(rich_message())


# --- framing --------------------------------------------------------------------------------


def test_frames_join_to_the_contiguous_encoding_and_reference_array_data() -> None:
    message = rich_message()
    frames = encode_message_frames(message)
    assert b"".join(frames) == encode_message(message)
    assert encoded_size(message) == len(encode_message(message))
    datas = [
        array.data for record in message.content.array_records.values() for array in record.values()
    ]
    assert len(frames) == 1 + len(datas)
    assert all(frame is data for frame, data in zip(frames[1:], datas, strict=True))


def test_decoded_arrays_are_independent_bytes() -> None:
    data = bytearray(encode_message(rich_message()))
    decoded = decode_message(data)
    data[:] = b"\0" * len(data)  # the decoded message must not share the buffer
    assert canonical_message(decoded) == canonical_message(rich_message())


def test_envelope_layout_and_small_overhead() -> None:
    ndarray = np.zeros(1000, dtype=np.float32)
    message = make_message(RecordDict({"params": ArrayRecord([ndarray])}))
    data = encode_message(message)
    magic, version, _ = PREFIX.unpack_from(data)
    assert (magic, version) == (b"SFWM", 1)
    payload = len(message.content.array_records["params"]["0"].data)
    assert data.endswith(message.content.array_records["params"]["0"].data)
    assert len(data) - payload < 1024


# --- encoding errors ------------------------------------------------------------------------


def test_encoding_an_unrepresentable_value_raises_wire_format_error() -> None:
    with pytest.raises(WireFormatError, match="cannot be encoded"):
        encode_message(make_message(RecordDict({"c": ConfigRecord({"big": 2**64})})))


def test_encoding_non_bytes_array_data_raises_wire_format_error() -> None:
    record = ArrayRecord({"x": Array(dtype="uint8", shape=(1,), stype="raw", data=b"x")})
    record["x"].data = bytearray(b"x")  # type: ignore[assignment]
    with pytest.raises(WireFormatError, match="requires bytes"):
        encode_message(make_message(RecordDict({"a": record})))


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (make_message(RecordDict(), reply_to_message_id=None), "reply_to_message_id must be str"),
        (make_message(RecordDict(), ttl="60"), "ttl must be a number"),
        (make_message(Error(code="2")), "error.code must be an integer"),  # type: ignore[arg-type]
    ],
)
def test_encoding_what_the_decoder_would_reject_fails_early(message: Message, match: str) -> None:
    with pytest.raises(WireFormatError, match=f"cannot be encoded: .*{match}"):
        encode_message(message)


def test_encoding_a_reassigned_array_field_fails_early() -> None:
    record = ArrayRecord({"x": Array(np.zeros(2))})
    record["x"].stype = None  # type: ignore[assignment]
    with pytest.raises(WireFormatError, match="stype must be str"):
        encode_message(make_message(RecordDict({"a": record})))


# --- strict decoding ------------------------------------------------------------------------


def test_wrong_magic() -> None:
    data = encode_message(rich_message())
    with pytest.raises(WireFormatError, match="magic"):
        decode_message(b"PK\x03\x04" + data[4:])


def test_wrong_version() -> None:
    data = bytearray(encode_message(rich_message()))
    data[4] = WIRE_VERSION + 1
    with pytest.raises(WireFormatError, match="unsupported wire version 2"):
        decode_message(data)


@pytest.mark.parametrize("size", [0, 1, 4, 8])
def test_truncated_prefix(size: int) -> None:
    with pytest.raises(WireFormatError, match="shorter than"):
        decode_message(encode_message(rich_message())[:size])


def test_truncated_header() -> None:
    data = encode_message(make_message(Error(code=1)))
    with pytest.raises(WireFormatError, match="exceeds"):
        decode_message(data[:-1])


def test_oversized_header_length() -> None:
    data = bytearray(encode_message(rich_message()))
    data[5:9] = struct.pack(">I", 2**32 - 1)
    with pytest.raises(WireFormatError, match="header length 4294967295 exceeds"):
        decode_message(data)


def test_truncated_payload() -> None:
    with pytest.raises(WireFormatError, match="truncated payload"):
        decode_message(encode_message(rich_message())[:-1])


def test_trailing_bytes() -> None:
    with pytest.raises(WireFormatError, match="1 trailing bytes"):
        decode_message(encode_message(rich_message()) + b"\0")
    with pytest.raises(WireFormatError, match="trailing payload"):
        decode_message(encode_message(make_message(Error(code=1))) + b"\0")


def test_header_claiming_more_buffers_than_present() -> None:
    def add_array(header: dict[str, Any]) -> None:
        header["content"]["params"][1]["extra"] = ["float32", [2], "numpy.ndarray", 8]

    with pytest.raises(WireFormatError, match="truncated payload"):
        decode_message(mutated(add_array))


def test_trailing_bytes_inside_the_header() -> None:
    header, payload = split(encode_message(rich_message()))
    packed = msgpack.packb(header, use_bin_type=True) + b"\xc0"
    data = PREFIX.pack(MAGIC, WIRE_VERSION, len(packed)) + packed + payload
    with pytest.raises(WireFormatError, match="not valid msgpack"):
        decode_message(data)


def test_header_that_is_not_a_map() -> None:
    with pytest.raises(WireFormatError, match="header must be a map, got list"):
        decode_message(envelope([1, 2]))


def test_not_bytes() -> None:
    with pytest.raises(WireFormatError, match="got str"):
        decode_message("SFWM")  # type: ignore[arg-type]


def test_duplicate_map_keys_are_rejected() -> None:
    header, _ = split(encode_message(make_message(Error(code=1))))
    packer = msgpack.Packer(use_bin_type=True)
    body = packer.pack_map_header(4) + b"".join(
        packer.pack(k) + packer.pack(v) for k, v in [*header.items(), ("error", None)]
    )
    with pytest.raises(WireFormatError, match="duplicate key"):
        decode_message(PREFIX.pack(MAGIC, WIRE_VERSION, len(body)) + body)


def test_ext_types_are_rejected() -> None:
    def ext_value(header: dict[str, Any]) -> None:
        header["metadata"]["group_id"] = msgpack.ExtType(5, b"")

    with pytest.raises(WireFormatError, match="extension type 5"):
        decode_message(mutated(ext_value))
    timestamp = b"\xd6\xff\0\0\0\0"  # fixext 4 of type -1: msgpack's timestamp
    with pytest.raises(WireFormatError, match="not valid msgpack"):
        decode_message(PREFIX.pack(MAGIC, WIRE_VERSION, len(timestamp)) + timestamp)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda h: h.pop("error"), "missing \\['error'\\]"),
        (lambda h: h.update(extra=1), "unexpected \\[\"'extra'\"\\]"),
        (lambda h: h.update(error={"code": 1, "reason": None}), "exactly one of content and error"),
        (lambda h: h.update(content=None), "exactly one of content and error"),
        (lambda h: h["metadata"].update(run_id="7"), "metadata.run_id must be an integer"),
        (lambda h: h["metadata"].update(dst_node_id=True), "dst_node_id must be an integer"),
        (lambda h: h["metadata"].update(src_task_id=1.0), "src_task_id must be an integer"),
        (lambda h: h["metadata"].update(group_id=b"g"), "group_id must be str"),
        (lambda h: h["metadata"].update(ttl="60"), "ttl must be a number"),
        (lambda h: h["metadata"].update(message_type="fit"), "Invalid message type"),
        (lambda h: h["metadata"].pop("delivered_at"), "missing \\['delivered_at'\\]"),
        (lambda h: h.update(content=[]), "content must be a map"),
        (lambda h: h["content"].update(x=["blob", {}]), "unknown kind 'blob'"),
        (lambda h: h["content"].update(x=["config"]), "must be a \\[kind, items\\] pair"),
        (lambda h: h["content"].update(x=["config", []]), "must be a map"),
        (
            lambda h: h["content"].update(x=["config", {"k": None}]),
            "config record 'x' is not valid",
        ),
        (lambda h: h["content"].update(x=["config", {"k": {}}]), "config record 'x' is not valid"),
        (lambda h: h["content"].update(x=["config", {b"k": 1}]), "config record 'x' is not valid"),
        (lambda h: h["content"].update(x=["config", {"k": [1, "a"]}]), "not valid"),
        (
            lambda h: h["content"].update(x=["metric", {"k": True}]),
            "metric record 'x' is not valid",
        ),
        (lambda h: h["content"].update(x=["metric", {"k": "a"}]), "metric record 'x' is not valid"),
        (lambda h: h["content"].update(x=["array", {"a": [1, [], "s", 0]}]), "dtype must be str"),
        (lambda h: h["content"].update(x=["array", {"a": ["f", 2, "s", 0]}]), "shape must be"),
        (lambda h: h["content"].update(x=["array", {"a": ["f", ["2"], "s", 0]}]), "not valid"),
        (lambda h: h["content"].update(x=["array", {"a": ["f", [], None, 0]}]), "stype must be"),
        (lambda h: h["content"].update(x=["array", {"a": ["f", [], "s", -1]}]), "negative"),
        (lambda h: h["content"].update(x=["array", {"a": ["f", [], "s", True]}]), "nbytes must"),
        (lambda h: h["content"].update(x=["array", {"a": ["f", [], "s"]}]), "must be \\[dtype"),
        (lambda h: h["content"].update(x=["array", {b"a": ["f", [], "s", 0]}]), "must be str"),
    ],
)
def test_invalid_headers_are_rejected(
    mutate: Callable[[dict[str, Any]], object], match: str
) -> None:
    with pytest.raises(WireFormatError, match=match):
        decode_message(mutated(mutate))


@pytest.mark.parametrize(
    ("error", "match"),
    [
        ({"code": "2", "reason": None}, "error.code must be an integer"),
        ({"code": 2, "reason": 3}, "error.reason must be str or nil"),
        ({"code": 2}, "missing \\['reason'\\]"),
    ],
)
def test_invalid_errors_are_rejected(error: object, match: str) -> None:
    def replace_error(header: dict[str, Any]) -> None:
        header["error"] = error

    with pytest.raises(WireFormatError, match=match):
        decode_message(mutated(replace_error, make_message(Error(code=0))))


def test_non_utf8_string_is_rejected() -> None:
    header, _ = split(encode_message(make_message(Error(code=1))))
    packed = msgpack.packb(header, use_bin_type=True).replace(b"\xa5train", b"\xa5tr\xffin")
    with pytest.raises(WireFormatError, match="not valid msgpack"):
        decode_message(PREFIX.pack(MAGIC, WIRE_VERSION, len(packed)) + packed)
