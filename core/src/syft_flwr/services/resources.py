"""Client resource checks: what a datasite offers, what a job needs, and reservations.

A datasite declares what it offers to jobs in its project's ``[tool.syft_flwr.resources]``
table (``cpus``, ``memory_gb``, ``gpus``, ``disk_gb``, ``datasets``); numbers it leaves out
are detected from the machine (GPUs count as 0 unless configured, since nothing portable can
tell a usable GPU). A requirement has the same keys, all optional.

The server asks each datasite with :func:`check_client_resources` (aux topic
:data:`RESOURCES_CHECK_TOPIC`); a datasite that can take the job *reserves* what it needs in
its :class:`ReservationBook` and answers with a secret token, so two servers cannot both be
promised the same CPUs. Reservations expire on their own (a server that crashed between check
and start must not block the datasite forever), are released with
:func:`cancel_client_resources`, and are consumed when the job starts
(:mod:`syft_flwr.services.jobs`).

This follows FLARE's ``check_client_resources``/``cancel_client_resources`` contract: a result
per datasite of ``(True, token)`` or ``(False, reason)``.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, RecordDict

from syft_flwr.errors import ResourceError
from syft_flwr.services.auxiliary import AuxReply, AuxSender, AuxStatus

__all__ = [
    "DEFAULT_RESERVATION_TTL",
    "MAX_RESERVATION_TTL",
    "NUMERIC_KEYS",
    "OFFER_KEY",
    "RESOURCES_CANCEL_TOPIC",
    "RESOURCES_CHECK_TOPIC",
    "Reservation",
    "ReservationBook",
    "ResourceCheck",
    "ResourceOffer",
    "ResourceRequirement",
    "as_requirement",
    "build_cancel_reply",
    "build_cancel_request",
    "build_check_reply",
    "build_check_request",
    "cancel_client_resources",
    "check_client_resources",
    "check_reservation_ttl",
    "check_resources",
    "detect_cpus",
    "detect_disk_gb",
    "detect_memory_gb",
    "parse_check_request",
    "parse_token",
    "reported_offer",
]

logger = logging.getLogger(__name__)

RESOURCES_CHECK_TOPIC = "syft_flwr.resources.check"
"""Aux topic: check a requirement and reserve it (answers a token or a reason)."""
RESOURCES_CANCEL_TOPIC = "syft_flwr.resources.cancel"
"""Aux topic: release a reservation by its token."""

NUMERIC_KEYS = ("cpus", "memory_gb", "gpus", "disk_gb")
"""The numeric resources, in the order reasons list them."""
DATASETS_KEY = "datasets"
_KEYS = (*NUMERIC_KEYS, DATASETS_KEY)
_LABELS = {"cpus": "cpus", "memory_gb": "GB of memory", "gpus": "gpus", "disk_gb": "GB of disk"}

DEFAULT_RESERVATION_TTL = 300.0
"""Seconds a reservation lives unless the job starts or it is cancelled first."""
MAX_RESERVATION_TTL = 86400.0
"""Longest reservation a server may ask for; a datasite is never blocked for longer."""

_GIB = 1024**3
_RETIRED_CAPACITY = 1024

# record layout on the wire
_REQUIREMENT = "requirement"
_RESERVATION = "reservation"
_RESULT = "result"
OFFER_KEY = "offer"
"""Content key of the offer a datasite reports (in check and ping answers)."""


# -- offers and requirements -----------------------------------------------------------------


def _number(table: Mapping[str, Any], key: str, where: str) -> float | None:
    value = table.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ResourceError(f"{key} in {where} must be a non-negative number, got {value!r}")
    return float(value)


def _datasets(table: Mapping[str, Any], where: str) -> frozenset[str]:
    value = table.get(DATASETS_KEY, [])
    if not isinstance(value, list | tuple) or not all(
        isinstance(name, str) and name.strip() for name in value
    ):
        raise ResourceError(
            f"{DATASETS_KEY} in {where} must be a list of dataset names, got {value!r}"
        )
    return frozenset(name.strip() for name in value)


def _check_keys(table: object, where: str, extra: frozenset[str] = frozenset()) -> None:
    if not isinstance(table, Mapping):
        raise ResourceError(f"{where} must be a table, got {type(table).__name__}")
    unknown = sorted(str(key) for key in table if key not in _KEYS and key not in extra)
    if unknown:
        raise ResourceError(
            f"unknown key(s) {', '.join(unknown)} in {where}; known keys: {', '.join(_KEYS)}"
        )


def _fmt(value: float) -> str:
    return f"{value:.4g}"


@dataclass(frozen=True)
class ResourceOffer:
    """What a datasite offers to jobs, in total (reservations are subtracted elsewhere)."""

    cpus: float
    memory_gb: float
    gpus: float
    disk_gb: float
    datasets: frozenset[str] = frozenset()

    @classmethod
    def from_table(
        cls,
        table: Mapping[str, Any],
        *,
        source: Path | str | None = None,
        folder: Path | None = None,
    ) -> ResourceOffer:
        """The offer in ``[tool.syft_flwr.resources]``, missing numbers detected here.

        :param source: the file the table came from (named in errors).
        :param folder: whose file system's free space is the disk offer (the project dir;
            the home dir when ``None``).
        :raises ResourceError: an unknown key or a value of the wrong type (naming both).
        """
        where = f"[tool.syft_flwr.resources] of {source or 'the project configuration'}"
        _check_keys(table, where)
        cpus = _number(table, "cpus", where)
        memory = _number(table, "memory_gb", where)
        gpus = _number(table, "gpus", where)
        disk = _number(table, "disk_gb", where)
        return cls(
            cpus=detect_cpus() if cpus is None else cpus,
            memory_gb=detect_memory_gb() if memory is None else memory,
            gpus=0.0 if gpus is None else gpus,
            disk_gb=detect_disk_gb(folder or Path.home()) if disk is None else disk,
            datasets=_datasets(table, where),
        )

    def amount(self, key: str) -> float:
        """The offered amount of the numeric resource ``key``."""
        value: float = getattr(self, key)
        return value

    def to_config(self) -> ConfigRecord:
        """The offer as a ``ConfigRecord`` (reported to the server)."""
        record: dict[str, Any] = {key: self.amount(key) for key in NUMERIC_KEYS}
        record[DATASETS_KEY] = sorted(self.datasets)
        return ConfigRecord(record)

    @classmethod
    def from_config(
        cls, record: Mapping[str, Any], where: str = "a reported offer"
    ) -> ResourceOffer:
        """The offer a datasite reported.

        :raises ResourceError: the record is not a complete, well-typed offer.
        """
        _check_keys(record, where)
        numbers: dict[str, float] = {}
        for key in NUMERIC_KEYS:
            value = _number(record, key, where)
            if value is None:
                raise ResourceError(f"{where} lacks {key}")
            numbers[key] = value
        return cls(**numbers, datasets=_datasets(record, where))


def detect_cpus() -> float:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return float(len(os.sched_getaffinity(0)))
    return float(os.cpu_count() or 1)


def detect_memory_gb() -> float:
    """Physical memory in GiB, or 0 (with a warning) where the OS does not say."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        page_size = os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        logger.warning("cannot detect physical memory: set memory_gb in [tool.syft_flwr.resources]")
        return 0.0
    return float(pages * page_size) / _GIB


def detect_disk_gb(folder: Path) -> float:
    """Free space in GiB on ``folder``'s file system, or 0 (with a warning) if unreadable."""
    try:
        return shutil.disk_usage(folder).free / _GIB
    except OSError as exc:
        logger.warning(
            "cannot read the free space of %s (%s): set disk_gb in [tool.syft_flwr.resources]",
            folder,
            exc,
        )
        return 0.0


@dataclass(frozen=True)
class ResourceRequirement:
    """What a job needs from one datasite; ``None`` means "no requirement"."""

    cpus: float | None = None
    memory_gb: float | None = None
    gpus: float | None = None
    disk_gb: float | None = None
    datasets: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, table: Mapping[str, Any], where: str) -> ResourceRequirement:
        """A requirement from a table or record; ``where`` names it in errors.

        :raises ResourceError: an unknown key or a value of the wrong type (naming both).
        """
        _check_keys(table, where)
        return cls(
            cpus=_number(table, "cpus", where),
            memory_gb=_number(table, "memory_gb", where),
            gpus=_number(table, "gpus", where),
            disk_gb=_number(table, "disk_gb", where),
            datasets=_datasets(table, where),
        )

    def amount(self, key: str) -> float:
        """The required amount of the numeric resource ``key`` (0 when not required)."""
        value: float | None = getattr(self, key)
        return value or 0.0

    def to_config(self) -> ConfigRecord:
        """The requirement as a ``ConfigRecord`` (only the keys that are set)."""
        record: dict[str, Any] = {
            key: getattr(self, key) for key in NUMERIC_KEYS if getattr(self, key) is not None
        }
        if self.datasets:
            record[DATASETS_KEY] = sorted(self.datasets)
        return ConfigRecord(record)

    def shortfall(self, offer: ResourceOffer, held: Mapping[str, float]) -> str | None:
        """Why ``offer`` minus what reservations ``held`` cannot meet this, or ``None``."""
        reasons: list[str] = []
        for key in NUMERIC_KEYS:
            needed = self.amount(key)
            total = offer.amount(key)
            free = max(0.0, total - held.get(key, 0.0))
            if needed > free:
                reasons.append(
                    f"needs {_fmt(needed)} {_LABELS[key]}, {_fmt(free)} free of {_fmt(total)}"
                )
        missing = self.datasets - offer.datasets
        if missing:
            reasons.append(
                f"needs dataset(s) {', '.join(sorted(missing))}; offers "
                f"{', '.join(sorted(offer.datasets)) or 'none'}"
            )
        return "; ".join(reasons) or None


def as_requirement(
    value: ResourceRequirement | Mapping[str, Any], where: str
) -> ResourceRequirement:
    """``value`` if it is a requirement already, else parsed as one.

    :raises ResourceError: it is neither a requirement nor a valid table.
    """
    if isinstance(value, ResourceRequirement):
        return value
    return ResourceRequirement.parse(value, where)


def check_reservation_ttl(value: object, where: str) -> float:
    """A valid reservation TTL in seconds: positive and at most :data:`MAX_RESERVATION_TTL`.

    :raises ResourceError: it is not.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= MAX_RESERVATION_TTL
    ):
        raise ResourceError(
            f"{where} must be a number of seconds in (0, {MAX_RESERVATION_TTL:g}], got {value!r}"
        )
    return float(value)


# -- reservations (client side) ----------------------------------------------------------------


@dataclass(frozen=True)
class Reservation:
    """Resources set aside for one prospective job.

    :param token: the secret that proves the holder asked for it.
    :param holder: the email of the server that asked.
    :param requirement: what is set aside.
    :param expires_at: when it lapses, on the book's clock (``inf`` once consumed).
    """

    token: str
    holder: str
    requirement: ResourceRequirement
    expires_at: float


class ReservationBook:
    """A datasite's reservations against its offer. Thread-safe.

    Live reservations hold resources until they expire, are cancelled, or are consumed by a
    job start; a consumed reservation keeps holding them for as long as this book lives (the
    job runs until the runner stops). Tokens that stopped being valid are remembered (a
    bounded number) so a refusal can say why.

    :param offer: what the datasite offers.
    :param ttl: default lifetime of a reservation, in seconds.
    :param clock: monotonic seconds (injectable for tests).
    :raises ResourceError: ``ttl`` is not a valid reservation TTL.
    """

    def __init__(
        self,
        offer: ResourceOffer,
        *,
        ttl: float = DEFAULT_RESERVATION_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.offer = offer
        self.ttl = check_reservation_ttl(ttl, "the reservation ttl")
        self._clock = clock
        self._live: dict[str, Reservation] = {}
        self._retired: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def held(self) -> dict[str, float]:
        """The amount of each numeric resource that live and consumed reservations hold."""
        with self._lock:
            self._expire()
            return self._held()

    def reserve(
        self, requirement: ResourceRequirement, holder: str, *, ttl: float | None = None
    ) -> tuple[bool, str]:
        """Set ``requirement`` aside for ``holder`` if it fits what is free.

        :return: ``(True, token)``, or ``(False, reason)`` saying what is short.
        :raises ResourceError: ``ttl`` is not a valid reservation TTL.
        """
        lifetime = self.ttl if ttl is None else check_reservation_ttl(ttl, "the reservation ttl")
        with self._lock:
            self._expire()
            reason = requirement.shortfall(self.offer, self._held())
            if reason is not None:
                return False, reason
            token = secrets.token_urlsafe(24)
            self._live[token] = Reservation(token, holder, requirement, self._clock() + lifetime)
        return True, token

    def cancel(self, token: str, holder: str) -> bool:
        """Release ``holder``'s live reservation ``token``; ``False`` if there is none.

        A consumed reservation belongs to the running job and is not released.
        """
        with self._lock:
            self._expire()
            reservation = self._live.get(token)
            if reservation is None or reservation.holder != holder:
                return False
            if math.isinf(reservation.expires_at):
                return False
            del self._live[token]
            self._retire(token, "was cancelled")
            return True

    def consume(self, token: str, holder: str) -> Reservation:
        """Turn ``holder``'s live reservation into the running job's (job start).

        :raises ResourceError: the token is unknown, expired, cancelled, already consumed or
            was issued to someone else; the message says which.
        """
        with self._lock:
            self._expire()
            reservation = self._live.get(token)
            if reservation is None:
                why = self._retired.get(token, "is unknown")
                raise ResourceError(f"reservation token {why}; check resources again")
            if reservation.holder != holder:
                raise ResourceError(f"reservation token was issued to {reservation.holder}")
            if math.isinf(reservation.expires_at):
                raise ResourceError("reservation token was already used to start a job")
            consumed = replace(reservation, expires_at=math.inf)
            self._live[token] = consumed
            return consumed

    def _held(self) -> dict[str, float]:
        held = dict.fromkeys(NUMERIC_KEYS, 0.0)
        for reservation in self._live.values():
            for key in NUMERIC_KEYS:
                held[key] += reservation.requirement.amount(key)
        return held

    def _expire(self) -> None:
        now = self._clock()
        for token in [t for t, r in self._live.items() if r.expires_at <= now]:
            del self._live[token]
            self._retire(token, "has expired")

    def _retire(self, token: str, why: str) -> None:
        self._retired[token] = why
        while len(self._retired) > _RETIRED_CAPACITY:
            self._retired.popitem(last=False)


# -- wire records ------------------------------------------------------------------------------


def build_check_request(requirement: ResourceRequirement, ttl: float | None) -> RecordDict:
    """The content of a :data:`RESOURCES_CHECK_TOPIC` request."""
    content = RecordDict({_REQUIREMENT: requirement.to_config()})
    if ttl is not None:
        content[_RESERVATION] = ConfigRecord({"ttl": ttl})
    return content


def parse_check_request(content: RecordDict) -> tuple[ResourceRequirement, float | None]:
    """The requirement and the asked-for reservation TTL of a check request.

    :raises ResourceError: the request is malformed.
    """
    record = content.config_records.get(_REQUIREMENT)
    if record is None:
        raise ResourceError(f"a resource check request needs a {_REQUIREMENT!r} ConfigRecord")
    requirement = ResourceRequirement.parse(record, "the resource check request")
    options = content.config_records.get(_RESERVATION)
    ttl = None if options is None else check_reservation_ttl(options.get("ttl"), "the asked ttl")
    return requirement, ttl


def build_check_reply(result: tuple[bool, str], offer: ResourceOffer) -> RecordDict:
    """The answer to a check: the result and, for the server's records, the whole offer."""
    ok, token_or_reason = result
    record: dict[str, bool | str] = {
        "ok": ok,
        "token": token_or_reason if ok else "",
        "reason": "" if ok else token_or_reason,
    }
    return RecordDict({_RESULT: ConfigRecord(dict(record)), OFFER_KEY: offer.to_config()})


def build_cancel_request(token: str) -> RecordDict:
    """The content of a :data:`RESOURCES_CANCEL_TOPIC` request."""
    return RecordDict({_RESERVATION: ConfigRecord({"token": token})})


def parse_token(content: RecordDict, record_key: str = _RESERVATION) -> str:
    """The token in a cancel (or job start) request.

    :raises ResourceError: there is none.
    """
    record = content.config_records.get(record_key)
    token = None if record is None else record.get("token")
    if not isinstance(token, str) or not token:
        raise ResourceError(f"the request carries no reservation token in {record_key!r}")
    return token


def build_cancel_reply(cancelled: bool) -> RecordDict:
    """The answer to a cancel request."""
    return RecordDict({_RESULT: ConfigRecord({"cancelled": cancelled})})


# -- server side -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceCheck:
    """One datasite's answer to a resource check.

    :param datasite: who answered (or did not).
    :param ok: whether it reserved what was asked.
    :param token: the reservation token when ``ok`` (empty otherwise).
    :param reason: why not, when not ``ok`` (empty otherwise).
    :param offer: everything the datasite offers, as it reported it (``None``: no answer).
    """

    datasite: str
    ok: bool
    token: str = ""
    reason: str = ""
    offer: ResourceOffer | None = None

    @property
    def result(self) -> tuple[bool, str]:
        """FLARE's form: ``(True, token)`` or ``(False, reason)``."""
        return (True, self.token) if self.ok else (False, self.reason)


def check_client_resources(
    sender: AuxSender,
    resource_reqs: Mapping[str, ResourceRequirement | Mapping[str, Any]],
    timeout: float,
    *,
    ttl: float | None = None,
) -> dict[str, tuple[bool, str]]:
    """Ask each datasite in ``resource_reqs`` whether it can take the job, reserving if so.

    :param resource_reqs: ``{datasite: requirement}`` (a :class:`ResourceRequirement` or a
        table with its keys).
    :param timeout: seconds to wait for the answers.
    :param ttl: how long datasites should hold the reservations (their default if ``None``).
    :return: ``{datasite: (True, token)}`` or ``(False, reason)``; a datasite that does not
        answer in time gets ``(False, "no answer ...")``.
    :raises ResourceError: a requirement or ``ttl`` is malformed (before anything is sent).
    :raises AuxError: a datasite is unknown or ``timeout`` is not positive (before sending).
    """
    checks = check_resources(sender, resource_reqs, timeout, ttl=ttl)
    return {datasite: check.result for datasite, check in checks.items()}


def check_resources(
    sender: AuxSender,
    resource_reqs: Mapping[str, ResourceRequirement | Mapping[str, Any]],
    timeout: float,
    *,
    ttl: float | None = None,
) -> dict[str, ResourceCheck]:
    """:func:`check_client_resources` with each datasite's reported offer kept as well.

    :raises ResourceError: as :func:`check_client_resources`.
    :raises AuxError: as :func:`check_client_resources`.
    """
    if not isinstance(resource_reqs, Mapping):
        raise ResourceError(
            f"resource_reqs must map datasites to requirements, got {type(resource_reqs).__name__}"
        )
    if ttl is not None:
        ttl = check_reservation_ttl(ttl, "the reservation ttl")
    requests = {
        datasite: build_check_request(
            as_requirement(requirement, f"the resource requirement for {datasite}"), ttl
        )
        for datasite, requirement in resource_reqs.items()
    }
    replies = sender.send_aux_requests(requests, RESOURCES_CHECK_TOPIC, timeout)
    return {datasite: _check_result(reply, timeout) for datasite, reply in replies.items()}


def _check_result(reply: AuxReply, timeout: float) -> ResourceCheck:
    datasite = reply.datasite
    if reply.status is AuxStatus.TIMEOUT:
        return ResourceCheck(
            datasite, False, reason=f"no answer from {datasite} within {timeout:g} s"
        )
    if reply.status is not AuxStatus.OK or reply.content is None:
        reason = f"{datasite} could not check resources ({reply.status.value}): {reply.detail}"
        return ResourceCheck(datasite, False, reason=reason)
    offer = reported_offer(reply)
    record = reply.content.config_records.get(_RESULT)
    ok = None if record is None else record.get("ok")
    if record is None or not isinstance(ok, bool):
        reason = f"{datasite} sent a malformed resource check answer"
        return ResourceCheck(datasite, False, reason=reason, offer=offer)
    if not ok:
        reason = str(record.get("reason") or "not enough resources")
        return ResourceCheck(datasite, False, reason=reason, offer=offer)
    token = record.get("token")
    if not isinstance(token, str) or not token:
        reason = f"{datasite} reserved resources but sent no token"
        return ResourceCheck(datasite, False, reason=reason, offer=offer)
    return ResourceCheck(datasite, True, token=token, offer=offer)


def reported_offer(reply: AuxReply) -> ResourceOffer | None:
    """The offer a datasite reported in its answer to a check (or a ping), if any."""
    if reply.content is None:
        return None
    record = reply.content.config_records.get(OFFER_KEY)
    if record is None:
        return None
    try:
        return ResourceOffer.from_config(record, f"the offer reported by {reply.datasite}")
    except ResourceError as exc:
        logger.warning("ignoring a malformed offer: %s", exc)
        return None


def cancel_client_resources(
    sender: AuxSender,
    check_results: Mapping[str, tuple[bool, str]],
    resource_reqs: Mapping[str, object],
    timeout: float,
) -> dict[str, bool]:
    """Release the reservations that :func:`check_client_resources` made.

    Only datasites whose check succeeded and that are in ``resource_reqs`` are asked (as in
    FLARE). Failures are logged at debug level: reservations expire on their own anyway.

    :return: ``{datasite: released}`` for each datasite asked.
    :raises ResourceError: ``check_results`` is not ``{datasite: (bool, str)}``.
    :raises AuxError: a datasite is unknown or ``timeout`` is not positive (before sending).
    """
    tokens: dict[str, str] = {}
    for datasite, result in check_results.items():
        if (
            not isinstance(result, tuple)
            or len(result) != 2
            or not isinstance(result[0], bool)
            or not isinstance(result[1], str)
        ):
            raise ResourceError(
                f"the check result for {datasite!r} must be (ok, token_or_reason), got {result!r}"
            )
        if result[0] and datasite in resource_reqs:
            tokens[datasite] = result[1]
    requests = {datasite: build_cancel_request(token) for datasite, token in tokens.items()}
    replies = sender.send_aux_requests(requests, RESOURCES_CANCEL_TOPIC, timeout, optional=True)
    return {datasite: _cancelled(reply) for datasite, reply in replies.items()}


def _cancelled(reply: AuxReply) -> bool:
    if reply.status is not AuxStatus.OK or reply.content is None:
        return False
    record = reply.content.config_records.get(_RESULT)
    return record is not None and record.get("cancelled") is True
