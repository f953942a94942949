"""The one exception hierarchy of syft-flwr.

Every error the framework raises on purpose derives from :class:`SyftFlwrError`, so a
caller can catch one type; each subclass message says what to fix.
"""

from __future__ import annotations


class SyftFlwrError(Exception):
    """Root of every error syft-flwr raises on purpose."""


class ConfigError(SyftFlwrError):
    """The project configuration is missing, malformed or inconsistent."""


class PluginError(SyftFlwrError):
    """A plugin failed to load or registered something invalid."""


class UnknownTransportError(PluginError):
    """No installed plugin provides the requested transport name."""


class TransportError(SyftFlwrError):
    """A transport could not carry out an operation."""


class BodyTooLargeError(TransportError):
    """A body exceeds the transport's declared maximum size."""


class MediumError(TransportError):
    """The medium failed under an operation: an I/O error, a full or read-only disk, a folder
    that vanished, a service that keeps failing. A fault, not a verdict on the request: a run
    that meets one is interrupted (resumable), never failed."""


class InvalidAddressError(TransportError):
    """An email, app name, endpoint or id would be unsafe to route or store."""


class WireFormatError(SyftFlwrError):
    """A message cannot be encoded, or bytes on the wire are not a valid syft-flwr envelope."""


class GridError(SyftFlwrError):
    """``SyftGrid`` was used incorrectly (no run set, unknown node, id collision)."""


class EngineError(SyftFlwrError):
    """The server engine (or its client-side counterpart) was asked something it cannot do."""


class AuxError(EngineError):
    """An aux request or handler registration is invalid (bad topic, target or handler)."""


class ResourceError(EngineError):
    """A resource requirement or offer is malformed, or a reservation token is not valid."""


class JobStartError(EngineError):
    """Too few datasites started a job to satisfy the run's ``min_clients``/``required`` policy."""


class WorkspaceError(EngineError):
    """A run's workspace (config snapshot, metrics, state snapshots) is unreadable or unusable."""


class WorkspaceIOError(WorkspaceError):
    """Writing to a workspace failed (disk full, read-only, gone): a fault that interrupts the
    run, which resumes once it is fixed."""


class SilentDatasitesError(EngineError):
    """Some datasites never answered during a run (the message names them, and what they said
    when they refused); set ``tolerate_dropouts = true`` for runs that expect that."""


class RunInterruptedError(EngineError):
    """A run stopped on a fault (the medium or the workspace failed) and stays resumable: fix
    the cause and start the same command again."""


class RequestRefusedError(SyftFlwrError):
    """A served request is refused on purpose; raised by a request handler.

    Every transport answers it with a ``REJECTED`` reply whose detail is this error's message
    (where the medium can carry an answer), so the sender learns why instead of waiting for
    the request's TTL. It is an outcome, not a fault: transports log it without a traceback.
    """


class UnauthorizedSenderError(RequestRefusedError):
    """The request's sender is not one this datasite (or server) accepts requests from."""


class RunDeniedError(RequestRefusedError):
    """The datasite's owner denied the run the request belongs to."""


class UnsafeFileError(TransportError):
    """A file in a synced folder is not a regular file (symlink, FIFO, device, directory) or
    sits below a symlinked folder; transports skip it rather than open or write through it."""
