"""The stop signal, exactly as the syft-flwr API reference defines it.

After a run ends, on success and on failure, the server sends every datasite a Flower
message of type ``system`` in group ``final`` whose content is
``{"config": ConfigRecord({"action": "stop", "reason": <reason>})}``. Clients that see it
stop serving.
"""

from __future__ import annotations

from flwr.app import ConfigRecord, Message, RecordDict

__all__ = [
    "STOP_ACTION",
    "STOP_GROUP_ID",
    "SYSTEM_MESSAGE_TYPE",
    "build_stop_content",
    "stop_reason",
]

SYSTEM_MESSAGE_TYPE = "system"
STOP_GROUP_ID = "final"
STOP_ACTION = "stop"
_CONFIG_KEY = "config"


def build_stop_content(reason: str) -> RecordDict:
    """The content of a stop signal carrying ``reason``."""
    return RecordDict({_CONFIG_KEY: ConfigRecord({"action": STOP_ACTION, "reason": reason})})


def stop_reason(message: Message) -> str | None:
    """Return the reason if ``message`` is a stop signal by the documented schema, else ``None``."""
    metadata = message.metadata
    if metadata.message_type != SYSTEM_MESSAGE_TYPE or not message.has_content():
        return None
    config = message.content.config_records.get(_CONFIG_KEY)
    if config is None or config.get("action") != STOP_ACTION:
        return None
    reason = config.get("reason", "")
    return reason if isinstance(reason, str) else str(reason)
