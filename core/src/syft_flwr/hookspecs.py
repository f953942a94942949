"""Every hook a syft-flwr plugin can implement.

Plugins are found through the ``syft_flwr`` entry-point group and implement any subset of
the hooks below with ``@syft_flwr.hookimpl``. A hook implementation whose name is not
declared here fails loudly at load time (``PluginManager.check_pending()``), so a typo
never goes unnoticed.

Events go through one channel: :func:`syft_flwr_event` receives every event of
:mod:`syft_flwr.events`, each implementation called in isolation (a raising observer is logged
and skipped, it cannot break a run or hide the event from other observers). The lifecycle hooks
(``syft_flwr_server_started`` ... ``syft_flwr_stop_signal_received``) are *derived*: the same
dispatcher calls them from the matching lifecycle event (:data:`DERIVED_HOOKS`); nothing calls
them separately. Hooks in :data:`DEPRECATED_HOOKS` still work until syft-flwr 0.2.0 and warn
once per plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from syft_flwr import events
from syft_flwr.registry import TransportRegistry

if TYPE_CHECKING:
    from flwr.app import Message

    from syft_flwr.transport import Transport

PROJECT_NAME = "syft_flwr"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def syft_flwr_register_transports(registry: TransportRegistry) -> None:
    """Register the transports this plugin provides.

    Call ``registry.register(TransportClass)`` once per transport: a
    :class:`~syft_flwr.transport.Transport` subclass whose ``name`` is what users write in
    ``[tool.syft_flwr] transport = "<name>"``; instances are built as
    ``TransportClass(settings)``. (``registry.register(name, factory)`` is deprecated.)

    :param registry: the registry to fill.
    """


@hookspec(firstresult=True)
def syft_flwr_stop_reason(message: Message) -> str | None:
    """Recognise a stop signal and return its reason, or ``None`` if it is not one.

    The core's built-in implementation recognises the documented schema (a ``system``
    message in group ``final`` carrying ``config.action == "stop"``). A plugin that bridges
    another system can recognise that system's stop message too; the first non-``None``
    answer wins.

    :param message: a message that arrived at a client.
    :return: the stop reason, or ``None``.
    """


@hookspec
def syft_flwr_server_started(run_id: int, app_name: str, datasites: list[str]) -> None:
    """A server run is about to start the ``ServerApp``.

    Derived from :class:`~syft_flwr.events.ServerStarted` (as is ``syft_flwr_event``).

    :param run_id: the run's id.
    :param app_name: the application name (without the ``flwr/`` prefix).
    :param datasites: the datasites taking part, in configuration order.
    """


@hookspec
def syft_flwr_server_finished(run_id: int, error: BaseException | None) -> None:
    """A server run ended, before stop signals are sent.

    Derived from :class:`~syft_flwr.events.ServerFinished` (as is ``syft_flwr_event``).

    :param run_id: the run's id.
    :param error: the exception that ended the run, or ``None`` on success.
    """


@hookspec
def syft_flwr_message_pushed(
    run_id: int, message_id: str, datasite: str, message_type: str, group_id: str
) -> None:
    """The grid handed a message for ``datasite`` to the transport.

    Derived from :class:`~syft_flwr.events.MessagePushed` (as is ``syft_flwr_event``).

    :param run_id: the run's id.
    :param message_id: the Flower message id the grid assigned.
    :param datasite: the recipient's email.
    :param message_type: the Flower message type (``train``, ``evaluate``, ``system``...).
    :param group_id: the message's group (the round, for most strategies).
    """


@hookspec
def syft_flwr_reply_pulled(
    run_id: int, message_id: str, datasite: str, error_code: int | None
) -> None:
    """The grid produced the reply to ``message_id`` for the strategy.

    Derived from :class:`~syft_flwr.events.ReplyPulled` (as is ``syft_flwr_event``).

    :param run_id: the run's id.
    :param message_id: the id of the message this reply answers.
    :param datasite: the replying datasite.
    :param error_code: Flower ``ErrorCode`` of an error reply (also for replies the grid
        synthesised on expiry), ``None`` for a successful reply.
    """


@hookspec
def syft_flwr_round_finished(run_id: int, group_id: str, replies: int, failures: int) -> None:
    """Deprecated alias: a ``send_and_receive`` call returned (one exchange, not a round).

    Derived from :class:`~syft_flwr.events.ExchangeFinished`; the name misled, as the engine's
    ``round_finished`` event is a committed round. Implement ``syft_flwr_event`` and look for
    ``ExchangeFinished`` instead. Removed in syft-flwr 0.2.0.

    :param run_id: the run's id.
    :param group_id: the group id of the messages sent (the round, for Flower strategies).
    :param replies: how many successful replies came back.
    :param failures: how many error replies (including expiries) came back.
    """


@hookspec
def syft_flwr_stop_signal_sent(run_id: int, datasite: str, reason: str) -> None:
    """The server sent the stop signal to ``datasite``.

    Derived from :class:`~syft_flwr.events.StopSignalSent` (as is ``syft_flwr_event``).

    :param run_id: the run's id.
    :param datasite: the recipient's email.
    :param reason: the reason carried in the signal.
    """


@hookspec
def syft_flwr_stop_signal_received(datasite: str, reason: str) -> None:
    """A client received the stop signal and is about to stop serving.

    Derived from :class:`~syft_flwr.events.StopSignalReceived` (as is ``syft_flwr_event``).

    :param datasite: the email of the client that stops.
    :param reason: the reason carried in the signal.
    """


@hookspec
def syft_flwr_event(event: events.Event) -> None:
    """Something happened: the one channel every event goes through.

    ``event`` is an :class:`~syft_flwr.events.EngineEvent` (the engine's run-level names,
    listed in :data:`~syft_flwr.events.ENGINE_EVENTS`, plus names applications fire) or one
    of the typed lifecycle events in :data:`~syft_flwr.events.LIFECYCLE_EVENTS`. Every event
    has ``name``, ``run_id``, ``time``, ``data`` and ``to_json()``. A raising implementation is
    logged and does not break the run nor hide the event from other implementations.

    :param event: the event.
    """


@hookspec(firstresult=True)
def syft_flwr_local_options(transport: str, workdir: Path) -> dict[str, Any] | None:
    """Deprecated: override ``Transport.local_options``.

    Options that let ``transport`` run entirely on this machine, for demos and tests; asked
    only when the registered class does not answer. Removed in syft-flwr 0.2.0.

    ``syft-flwr demo --transport NAME`` asks this hook for the options table of every
    participant; a plugin answers for its own transport names (for example a temporary
    datasites folder under ``workdir``) and returns ``None`` for the others.

    :param transport: the transport name asked about.
    :param workdir: a private temporary directory the run may use; removed afterwards.
    :return: the options table, or ``None`` if this plugin does not provide ``transport``.
    """


@hookspec(firstresult=True)
def syft_flwr_publish_key_document(transport: Transport, document: bytes) -> bool | None:
    """Deprecated: override ``Transport.publish_key_document``.

    Publish ``transport.identity``'s public key document where peers can fetch it; asked only
    when the transport's class does not implement the method. Removed in syft-flwr 0.2.0.

    Called before an encrypted run sends anything. A plugin answers for its own transports
    (for SyftBox: ``datasites/<email>/public/did.json``, readable by everyone) and returns
    ``None`` for the others. Publishing must replace the previous document atomically, since
    a peer may read it at any moment. If no plugin answers, the encrypted run refuses to start.

    :param transport: the transport acting as the identity whose document this is.
    :param document: the document as UTF-8 JSON bytes, to store as is.
    :return: ``True`` once published, ``None`` if ``transport`` is not this plugin's.
    """


@hookspec(firstresult=True)
def syft_flwr_fetch_key_document(transport: Transport, datasite: str) -> bytes | None:
    """Deprecated: override ``Transport.fetch_key_document``.

    Fetch the public key document ``datasite`` published, as its raw bytes; asked only when
    the transport's class does not implement the method. Removed in syft-flwr 0.2.0.

    The core verifies every signature in it, so a plugin returns what it finds without
    interpreting it. Return ``None`` when ``transport`` is not this plugin's or when
    ``datasite`` has published nothing (the core then reports the datasite as unreachable
    securely).

    :param transport: the transport to fetch through.
    :param datasite: the email whose document is wanted.
    :return: the document bytes, or ``None``.
    """


@hookspec
def syft_flwr_cli_commands() -> list[tuple[str, str, Callable[[Sequence[str]], int]]]:
    """Subcommands this plugin adds to the ``syft-flwr`` command line.

    Each entry is ``(name, help, main)``; ``syft-flwr NAME ARGS...`` calls ``main(ARGS)`` and
    exits with its return value. The core never imports a plugin by name, so this is how
    ``syft-flwr gdrive login`` reaches the Drive plugin.

    :return: the plugin's subcommands.
    """
    return []  # a spec's body never runs; this only satisfies type checkers


DERIVED_HOOKS: dict[type[events.LifecycleEvent], str] = {
    events.ServerStarted: "syft_flwr_server_started",
    events.ServerFinished: "syft_flwr_server_finished",
    events.MessagePushed: "syft_flwr_message_pushed",
    events.ReplyPulled: "syft_flwr_reply_pulled",
    events.ExchangeFinished: "syft_flwr_round_finished",
    events.StopSignalSent: "syft_flwr_stop_signal_sent",
    events.StopSignalReceived: "syft_flwr_stop_signal_received",
}
"""The lifecycle hook the dispatcher calls from a lifecycle event, with its fields: one for
each event that predates ``syft_flwr_event``; later events reach only that hook."""

DEPRECATED_HOOKS: dict[str, str] = {
    "syft_flwr_local_options": "override the classmethod local_options(cls, workdir) of your "
    "Transport subclass",
    "syft_flwr_publish_key_document": "override publish_key_document(self, document) of your "
    "Transport subclass",
    "syft_flwr_fetch_key_document": "override fetch_key_document(self, datasite) of your "
    "Transport subclass",
    "syft_flwr_round_finished": "implement syft_flwr_event and handle "
    "syft_flwr.events.ExchangeFinished",
}
"""Hooks that still work until syft-flwr 0.2.0, and what to use instead."""
