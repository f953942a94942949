"""Whether a run encrypts, and building its :class:`SecureChannel` when it does.

The decision, in order: ``SYFT_FLWR_ENCRYPTION_ENABLED`` when set, else the transport's class
attribute ``encrypt_by_default`` (``False`` when absent: the memory transport stays plaintext,
SyftBox sets it to ``True``). It does not depend on ``TransportCapabilities.encrypted``, which
describes what the medium does on its own. Turning encryption off explicitly logs a warning,
once per run, because the caller built the run. When it is on, keys are loaded (generated on
first use) and this identity's key document is published before anything is sent: failing to
do so is an error, never a silent fall back to plaintext. Keys generated on first use are
saved only once their document is published, so a refused publication (another identity's
syft-crypto ``did.json`` in the way) leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pluggy

from syft_flwr.config import RuntimeSettings
from syft_flwr.crypto.channel import SecureChannel
from syft_flwr.crypto.document import build_document
from syft_flwr.crypto.errors import KeyStoreError
from syft_flwr.crypto.keys import IdentityKeys
from syft_flwr.crypto.keystore import KeyStore
from syft_flwr.crypto.pins import PinStore
from syft_flwr.crypto.replay import ReplayStore
from syft_flwr.legacy_hooks import fetch_key_document, publish_key_document
from syft_flwr.plugins import get_plugin_manager
from syft_flwr.transport import Transport

__all__ = [
    "KEY_DIR_OPTION",
    "PINS_FILE",
    "REPLAY_FILE",
    "encryption_enabled",
    "key_store_for",
    "open_channel",
    "publish_keys",
]

logger = logging.getLogger(__name__)

KEY_DIR_OPTION = "key_dir"
"""Transport option naming the key root (instead of ``SYFT_FLWR_KEY_DIR`` or the default)."""

REPLAY_FILE = "replay.sqlite3"
PINS_FILE = "peers.json"


def encryption_enabled(transport: Transport, runtime: RuntimeSettings) -> bool:
    """The policy: the environment variable if set, else the transport's default."""
    if runtime.encryption_enabled is not None:
        return runtime.encryption_enabled
    return transport.encrypt_by_default


def key_store_for(transport: Transport) -> KeyStore:
    """The key store of ``transport``'s identity (its ``key_dir`` option, else the default)."""
    option: Any = transport.settings.options.get(KEY_DIR_OPTION)
    if option is not None and not isinstance(option, str | Path):
        raise KeyStoreError(f"transport option {KEY_DIR_OPTION}={option!r} must be a path")
    if option is None:
        return KeyStore()
    return KeyStore(Path(option).expanduser(), source=f"the transport option {KEY_DIR_OPTION}")


def publish_keys(
    transport: Transport, keys: IdentityKeys, plugin_manager: pluggy.PluginManager | None = None
) -> None:
    """Publish ``keys``' public document through ``transport``.

    :raises KeyDocumentsUnsupportedError: the transport cannot publish key documents (a
        :class:`~syft_flwr.crypto.errors.MissingKeyError` naming the method to implement).
    :raises SyftCryptoIdentityError: the transport found another identity's syft-crypto
        document in its place (see :mod:`~syft_flwr.crypto.syft_crypto_keys`).
    """
    data = json.dumps(build_document(keys), indent=2).encode()
    publish_key_document(transport, data, plugin_manager or get_plugin_manager())


def open_channel(
    transport: Transport,
    runtime: RuntimeSettings,
    plugin_manager: pluggy.PluginManager | None = None,
) -> SecureChannel | None:
    """The run's channel when encryption is on, else ``None`` (after warning if explicit).

    :raises KeyStoreError: the keys cannot be read or created.
    :raises SyftCryptoIdentityError: new keys would replace this identity's syft-crypto keys.
    :raises MissingKeyError: this identity's key document cannot be published (the
        transport does not implement ``publish_key_document``:
        :class:`~syft_flwr.crypto.errors.KeyDocumentsUnsupportedError`).
    """
    if not encryption_enabled(transport, runtime):
        if runtime.encryption_enabled is False:
            logger.warning(
                "end-to-end encryption is OFF for %s (SYFT_FLWR_ENCRYPTION_ENABLED=false): "
                "messages travel in plaintext",
                transport.identity,
            )
        return None
    store = key_store_for(transport)
    fresh = not store.exists(transport.identity)
    keys = IdentityKeys.generate(transport.identity) if fresh else store.load(transport.identity)
    publish_keys(transport, keys, plugin_manager)
    if fresh:  # saved once published: keys whose document was refused must not linger
        store.save(keys)
    manager = plugin_manager or get_plugin_manager()

    def fetch(datasite: str) -> bytes | None:
        return fetch_key_document(transport, datasite, manager)

    folder = store.path(transport.identity).parent
    replay = ReplayStore(folder / REPLAY_FILE)
    return SecureChannel(keys, replay, fetch, pins=PinStore(folder / PINS_FILE))
