"""Building a Flower ``Message`` from explicit metadata.

``Message(content_or_error, metadata=...)`` is how Flower's own deserializer rebuilds a
received message, but Flower's type overloads leave that keyword out. Every place that
needs it (decoding, error replies, stop signals) goes through here, so the one type
exception lives in one spot.
"""

from __future__ import annotations

from flwr.app import Error, Message, Metadata, RecordDict


def message_with_metadata(
    metadata: Metadata, *, content: RecordDict | None = None, error: Error | None = None
) -> Message:
    """A message carrying exactly one of ``content`` or ``error`` with the given metadata."""
    if (content is None) == (error is None):
        raise ValueError("a message carries exactly one of content or error")
    if error is not None:
        return Message(error=error, metadata=metadata)  # type: ignore[call-overload,no-any-return]
    return Message(content=content, metadata=metadata)  # type: ignore[call-overload,no-any-return]
