"""The stop signal's schema, exactly as the reference API documents it."""

from __future__ import annotations

from flwr.app import ConfigRecord, Message, Metadata, RecordDict

from syft_flwr.stop_signal import build_stop_content, stop_reason


def message(message_type: str, content: RecordDict, group_id: str = "final") -> Message:
    metadata = Metadata(
        run_id=1,
        message_id="m",
        src_node_id=1,
        dst_node_id=5,
        reply_to_message_id="",
        group_id=group_id,
        created_at=0.0,
        ttl=10.0,
        message_type=message_type,
    )
    return Message(content=content, metadata=metadata)


def test_schema_matches_the_reference():
    content = build_stop_content("Server stopped")
    assert list(content.keys()) == ["config"]
    assert dict(content["config"]) == {"action": "stop", "reason": "Server stopped"}


def test_stop_signal_is_recognised():
    assert stop_reason(message("system", build_stop_content("done"))) == "done"


def test_other_messages_are_not_stop_signals():
    assert stop_reason(message("train", build_stop_content("x"))) is None
    other = RecordDict({"config": ConfigRecord({"action": "pause"})})
    assert stop_reason(message("system", other)) is None
    assert stop_reason(message("system", RecordDict())) is None
