"""Back-pressure and failure handling for every Drive call.

Drive answers a busy client with 429, 5xx, or 403 ``rateLimitExceeded`` /
``userRateLimitExceeded``; connections also drop. All of these are *back-pressure*: we wait
(exponential backoff with jitter, at least as long as ``Retry-After`` says) and try again, up to
a bounded number of attempts. We never use the client library's own ``num_retries``: its backoff
is uncapped, it ignores ``Retry-After``, and on resumable uploads it re-sends an already consumed
stream and hangs (see DESIGN section 6).

Everything else is a real error, translated into one that names the fix: share the folder, use a
shared drive, renew the credentials.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TypeVar

import httplib2  # type: ignore[import-untyped]
from google.auth import exceptions as auth_exceptions
from googleapiclient.errors import HttpError  # type: ignore[import-untyped]

from syft_flwr.errors import SyftFlwrError
from syft_flwr_gdrive.errors import (
    CredentialsError,
    DriveError,
    DrivePermissionError,
    DriveQuotaError,
    DriveRateLimitError,
)

__all__ = ["Retrier", "RetryPolicy", "error_reason"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_PERMISSION_REASONS = frozenset(
    {
        "insufficientFilePermissions",
        "forbidden",
        "appNotAuthorizedToFile",
        "insufficientPermissions",
    }
)
_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # ConnectionError, TimeoutError, socket errors
    http.client.HTTPException,
    httplib2.HttpLib2Error,
    auth_exceptions.TransportError,
)


def error_reason(exc: HttpError) -> str:
    """Drive's machine-readable reason (``notFound``, ``storageQuotaExceeded``...), or ``""``."""
    try:
        data = json.loads(exc.content)
        errors = data["error"].get("errors") or []
        return str(errors[0].get("reason", "")) if errors else ""
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return ""


def _status(exc: HttpError) -> int:
    return int(exc.resp.status)


def _retry_after(exc: HttpError) -> float | None:
    raw = exc.resp.get("retry-after")
    try:
        return max(0.0, float(str(raw))) if raw is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying.

    :param attempts: tries per operation before giving up (at least 1).
    :param base_delay: the first backoff, doubled on every further failure.
    :param max_delay: cap of one backoff of our own.
    :param max_retry_after: cap of a server's ``Retry-After`` we honour (so a bogus header
        cannot park a run for hours).
    """

    attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 32.0
    max_retry_after: float = 120.0

    def delay(self, failures: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after the ``failures``-th consecutive failure.

        "Equal jitter": half the exponential step is fixed, half random, so retries of many
        clients spread out while each still backs off; never less than ``Retry-After``.
        """
        step = min(self.max_delay, self.base_delay * 2.0 ** max(0, failures - 1))
        wait = step / 2 + rng.uniform(0, step / 2)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait


@dataclass
class Retrier:
    """Runs Drive calls under a :class:`RetryPolicy`, translating final errors.

    :param policy: the retry budget.
    :param identity: the account, for error messages.
    :param sleep: how to wait (tests may record instead).
    """

    policy: RetryPolicy
    identity: str
    sleep: Callable[[float], None] = time.sleep
    _rng: random.Random = field(default_factory=random.Random)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, call: Callable[[], T], what: str, *, passthrough: Collection[int] = ()) -> T:
        """``call()`` until it succeeds, a real error occurs, or the budget is spent.

        :param what: what the call does, for log lines and errors ("listing the inboxes").
        :param passthrough: HTTP statuses re-raised unchanged as ``HttpError`` for the caller
            to handle (e.g. 404 on a delete, 409 on a create with a known id).
        :raises DriveError: (or a subclass) the call failed for good.
        """
        failures = 0
        while True:
            try:
                return call()
            except HttpError as exc:
                if _status(exc) in passthrough:
                    raise
                failures += 1
                self.backoff(exc, failures, what)
            except SyftFlwrError:
                raise
            except Exception as exc:
                failures += 1
                self.backoff(exc, failures, what)

    def backoff(self, exc: BaseException, failures: int, what: str) -> None:
        """Sleep before retry number ``failures``, or raise if ``exc`` is final.

        For hand-written loops (resumable uploads, ranged downloads) that keep their own
        progress between attempts.
        """
        retry_after = None
        if isinstance(exc, HttpError):
            if not self._transient(exc):
                raise self.translate(exc, what) from exc
            retry_after = _retry_after(exc)
        elif isinstance(exc, auth_exceptions.RefreshError):
            raise CredentialsError(
                f"Google refused to refresh the credentials of {self.identity} while {what}: "
                f"{exc}. Sign in again with 'syft-flwr gdrive login' or check the "
                "service-account key"
            ) from exc
        elif not isinstance(exc, _NETWORK_ERRORS):
            raise exc
        if failures >= self.policy.attempts and not isinstance(exc, HttpError):
            raise DriveError(
                f"could not reach Google Drive while {what} for {self.identity} ({failures} "
                f"attempts, last: {_describe(exc)}): check the network connection and api_root"
            ) from exc
        if failures >= self.policy.attempts:
            raise DriveRateLimitError(
                f"Drive kept failing while {what} for {self.identity} "
                f"({failures} attempts, last: {_describe(exc)}); it is overloaded or rate-"
                "limiting this account: try again later or raise retry_attempts",
                status=_status(exc),
                reason=error_reason(exc),
            ) from exc
        with self._lock:
            wait = self.policy.delay(failures, retry_after, self._rng)
        logger.info("%s: %s; retry %d in %.2fs", what, _describe(exc), failures, wait)
        self.sleep(wait)

    @staticmethod
    def _transient(exc: HttpError) -> bool:
        status = _status(exc)
        return status in _RETRY_STATUSES or (
            status == 403 and error_reason(exc) in _RATE_LIMIT_REASONS
        )

    def translate(self, exc: HttpError, what: str) -> DriveError:
        """The error to raise for a final Drive answer, with what to do about it."""
        status, reason = _status(exc), error_reason(exc)
        detail = f"while {what}: Drive answered {status} {reason or ''} ({_message(exc)})"
        if status == 401:
            return DriveError(
                f"Google rejected the credentials of {self.identity} {detail}. Sign in again "
                "with 'syft-flwr gdrive login' or check the service-account key",
                status=status,
                reason=reason,
            )
        if reason == "storageQuotaExceeded":
            return DriveQuotaError(
                f"the Drive storage of {self.identity} is full {detail}. Free space in that "
                "Drive, or put the SyftBox folder in a shared drive (root_folder_id): a service "
                "account has no storage of its own",
                status=status,
                reason=reason,
            )
        if status == 404 or reason in _PERMISSION_REASONS:
            return DrivePermissionError(
                f"{self.identity} cannot access a file or folder {detail}. Its owner must share "
                f"the syft_outbox_inbox_... folder with {self.identity} (the sender's transport "
                "does this itself; check the folder was not unshared or deleted)",
                status=status,
                reason=reason,
            )
        return DriveError(f"{self.identity}: {detail}", status=status, reason=reason)


def _message(exc: HttpError) -> str:
    try:
        return str(json.loads(exc.content)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return exc.content.decode("utf-8", "replace")[:200] if exc.content else ""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, HttpError):
        return f"HTTP {_status(exc)} {error_reason(exc)}".strip()
    return f"{type(exc).__name__}: {exc}"
