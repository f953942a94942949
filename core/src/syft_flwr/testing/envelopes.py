"""Header fields for tests that seal envelopes below the secure channel.

:func:`~syft_flwr.crypto.envelope.seal` and its streaming forms take the header as a mapping
that the channel otherwise builds (ids, times, key ids). Tests of the envelope, of one-pass
bodies and of a transport's handling of sealed bodies need the same mapping; one copy here.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syft_flwr.crypto.keys import IdentityKeys

__all__ = ["header_fields"]


def header_fields(
    sender: IdentityKeys,
    recipient: IdentityKeys,
    *,
    app: str = "app",
    endpoint: str = "ep",
    created: float = 1.0,
    expires: float = 2.0,
) -> dict[str, Any]:
    """Every envelope header field but ``ephemeral``, for a message from ``sender`` to
    ``recipient`` under their current keys, with a fresh random message id."""
    return {
        "sender": sender.email,
        "recipient": recipient.email,
        "app": app,
        "endpoint": endpoint,
        "message_id": os.urandom(16),
        "reply_to": b"",
        "created": created,
        "expires": expires,
        "sender_kid": sender.current.kid,
        "recipient_kid": recipient.current.kid,
    }
