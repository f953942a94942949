"""Hook implementations the core provides itself, registered after every installed plugin."""

from __future__ import annotations

from flwr.app import Message

from syft_flwr.hookspecs import hookimpl
from syft_flwr.stop_signal import stop_reason


@hookimpl(trylast=True)
def syft_flwr_stop_reason(message: Message) -> str | None:
    """Recognise the documented stop-signal schema."""
    return stop_reason(message)
