"""Job start: telling reserved datasites to serve a run, under a ``min_clients`` policy.

After :func:`~syft_flwr.services.resources.check_client_resources` has reserved resources at
the datasites that can take the job, :func:`start_client_job` sends each of them the run id
with its reservation token (aux topic :data:`JOB_START_TOPIC`). A datasite that accepts
consumes the token and from then on belongs to that run: it serves that run's Flower messages
and drops every other run's. The report says who started and why the others did not; when
the run's :class:`JobPolicy` is not met (fewer than ``min_clients`` started, or a required
datasite did not), :class:`~syft_flwr.errors.JobStartError` says so and lists every failure.
Otherwise the caller drops the datasites that did not start from the run.

The policy comes from ``[tool.syft_flwr.job]``::

    [tool.syft_flwr.job]
    min_clients = 2                        # at least this many must start (default 1)
    required = ["hospital-a@example.org"]  # these must start, whatever min_clients says
    reservation_ttl = 300                  # seconds datasites hold a reservation
    start_timeout = 30                     # seconds to wait for checks and starts

    [tool.syft_flwr.job.resources]         # asked of every datasite
    cpus = 2
    datasets = ["diabetes"]
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, RecordDict

from syft_flwr.config import ProjectConfig
from syft_flwr.errors import ConfigError, EngineError, JobStartError, ResourceError
from syft_flwr.services.auxiliary import AuxReply, AuxSender, AuxStatus
from syft_flwr.services.resources import ResourceRequirement, check_reservation_ttl

__all__ = [
    "DEFAULT_START_TIMEOUT",
    "JOB_START_TOPIC",
    "JobPolicy",
    "JobStartReport",
    "build_start_reply",
    "build_start_request",
    "parse_start_request",
    "start_client_job",
]

logger = logging.getLogger(__name__)

JOB_START_TOPIC = "syft_flwr.job.start"
"""Aux topic: start serving a run, consuming a reservation token."""
DEFAULT_START_TIMEOUT = 30.0
"""Seconds to wait for resource checks and job starts when the project does not say."""

_JOB_KEYS = ("min_clients", "required", "resources", "reservation_ttl", "start_timeout")
_JOB = "job"
_RESULT = "result"


@dataclass(frozen=True)
class JobPolicy:
    """Who must start for a run to go ahead, and what to ask of datasites.

    :param min_clients: at least this many datasites must start (``None``: at least one).
    :param required: datasites that must start.
    :param resources: the requirement asked of every datasite.
    :param reservation_ttl: how long datasites hold reservations (their default if ``None``).
    :param start_timeout: seconds to wait for resource checks and job starts.
    """

    min_clients: int | None = None
    required: frozenset[str] = frozenset()
    resources: ResourceRequirement = field(default_factory=ResourceRequirement)
    reservation_ttl: float | None = None
    start_timeout: float = DEFAULT_START_TIMEOUT

    @classmethod
    def from_config(
        cls, config: ProjectConfig, datasites: Sequence[str] | None = None
    ) -> JobPolicy | None:
        """The policy in ``config``'s ``[tool.syft_flwr.job]``, ``None`` without that table.

        :param datasites: the run's datasites (``config.datasites`` when ``None``).
        :raises ConfigError: a key is unknown or malformed (naming it and the file).
        :raises ResourceError: the ``resources`` table or ``reservation_ttl`` is malformed.
        """
        if not config.job:
            return None
        members = config.datasites if datasites is None else datasites
        return cls.from_table(config.job, members, config.source)

    @classmethod
    def from_table(
        cls,
        table: Mapping[str, Any],
        datasites: Sequence[str],
        source: Path | str | None = None,
    ) -> JobPolicy:
        """Parse and validate a ``[tool.syft_flwr.job]`` table against the run's datasites.

        :raises ConfigError: a key is unknown or malformed (naming it and the file).
        :raises ResourceError: the ``resources`` table or ``reservation_ttl`` is malformed.
        """
        origin = source or "the project configuration"
        where = f"[tool.syft_flwr.job] of {origin}"
        unknown = sorted(str(key) for key in table if key not in _JOB_KEYS)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {', '.join(unknown)} in {where}; "
                f"known keys: {', '.join(_JOB_KEYS)}"
            )
        resources = table.get("resources", {})
        ttl = table.get("reservation_ttl")
        return cls(
            min_clients=_min_clients(table.get("min_clients"), datasites, where),
            required=_required(table.get("required", []), datasites, where),
            resources=ResourceRequirement.parse(
                resources, f"[tool.syft_flwr.job.resources] of {origin}"
            ),
            reservation_ttl=None
            if ttl is None
            else check_reservation_ttl(ttl, f"reservation_ttl in {where}"),
            start_timeout=_start_timeout(table.get("start_timeout"), where),
        )

    def shortfall(self, started: Sequence[str]) -> str | None:
        """Why a run that ``started`` at these datasites may not go ahead, or ``None``."""
        reasons: list[str] = []
        minimum = 1 if self.min_clients is None else self.min_clients
        if len(started) < minimum:
            reasons.append(f"{len(started)} datasite(s) started, min_clients is {minimum}")
        missing = sorted(self.required - set(started))
        if missing:
            reasons.append(f"required datasite(s) did not start: {', '.join(missing)}")
        return "; ".join(reasons) or None


def _min_clients(value: object, datasites: Sequence[str], where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"min_clients in {where} must be a positive integer, got {value!r}")
    if value > len(datasites):
        raise ConfigError(
            f"min_clients = {value} in {where} exceeds the {len(datasites)} datasite(s) of the run"
        )
    return value


def _required(value: object, datasites: Sequence[str], where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"required in {where} must be a list of datasite emails, got {value!r}")
    unknown = sorted(set(value) - set(datasites))
    if unknown:
        raise ConfigError(
            f"required in {where} names {', '.join(unknown)}, not among the run's datasites "
            f"({', '.join(datasites) or 'none'})"
        )
    return frozenset(value)


def _start_timeout(value: object, where: str) -> float:
    if value is None:
        return DEFAULT_START_TIMEOUT
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"start_timeout in {where} must be a positive number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class JobStartReport:
    """Who started serving run ``run_id`` and why the others did not.

    :param run_id: the run.
    :param started: the datasites that accepted, in the order they were asked.
    :param failed: ``{datasite: reason}`` for every datasite asked (or required) that did not.
    """

    run_id: int
    started: tuple[str, ...]
    failed: Mapping[str, str]


def build_start_request(run_id: int, token: str) -> RecordDict:
    """The content of a :data:`JOB_START_TOPIC` request."""
    return RecordDict({_JOB: ConfigRecord({"run_id": run_id, "token": token})})


def parse_start_request(content: RecordDict) -> tuple[int, str]:
    """The run id and reservation token of a job start request.

    :raises ResourceError: the request is malformed.
    """
    record = content.config_records.get(_JOB)
    run_id = None if record is None else record.get("run_id")
    token = None if record is None else record.get("token")
    if isinstance(run_id, bool) or not isinstance(run_id, int) or run_id < 0:
        raise ResourceError(f"a job start request needs a run id, got {run_id!r}")
    if not isinstance(token, str) or not token:
        raise ResourceError("a job start request needs a reservation token")
    return run_id, token


def build_start_reply(started: bool, reason: str = "") -> RecordDict:
    """The answer to a job start request."""
    return RecordDict({_RESULT: ConfigRecord({"started": started, "reason": reason})})


def start_client_job(
    sender: AuxSender,
    run_id: int,
    tokens: Mapping[str, str],
    policy: JobPolicy | None,
    timeout: float,
) -> JobStartReport:
    """Tell each datasite in ``tokens`` to start serving ``run_id`` with its token.

    :param tokens: ``{datasite: reservation token}`` from a resource check.
    :param policy: who must start; ``None`` requires one datasite.
    :param timeout: seconds to wait for the answers.
    :return: who started and why the others did not.
    :raises JobStartError: ``policy`` is not met; every failure is listed. Datasites that did
        start are then bound to a run that will not happen: the caller ends it with the stop
        signal, as ``syftbox_flwr_server`` always does.
    :raises EngineError: ``run_id`` is not a non-negative integer.
    :raises ResourceError: a token is not a non-empty string (before anything is sent).
    :raises AuxError: a datasite is unknown or ``timeout`` is not positive (before sending).
    """
    if isinstance(run_id, bool) or not isinstance(run_id, int) or run_id < 0:
        raise EngineError(f"run_id must be a non-negative integer, got {run_id!r}")
    policy = policy or JobPolicy()
    for datasite, token in tokens.items():
        if not isinstance(token, str) or not token:
            raise ResourceError(
                f"the reservation token for {datasite!r} must be a non-empty string"
            )
    requests = {datasite: build_start_request(run_id, token) for datasite, token in tokens.items()}
    replies = sender.send_aux_requests(requests, JOB_START_TOPIC, timeout)
    started: list[str] = []
    failed: dict[str, str] = {}
    for datasite, reply in replies.items():
        reason = _start_failure(reply, timeout)
        if reason is None:
            started.append(datasite)
        else:
            failed[datasite] = reason
    for datasite in sorted(policy.required - set(tokens)):
        failed[datasite] = "no reservation token (its resource check failed or it was not asked)"
    report = JobStartReport(run_id, tuple(started), failed)
    problem = policy.shortfall(report.started)
    if problem is not None:
        lines = "\n".join(f"  {datasite}: {reason}" for datasite, reason in failed.items())
        raise JobStartError(
            f"run {run_id} cannot start: {problem}" + (f"\nfailures:\n{lines}" if lines else "")
        )
    if failed:
        logger.warning(
            "run %s starts without %s: %s",
            run_id,
            ", ".join(failed),
            "; ".join(f"{d}: {r}" for d, r in failed.items()),
        )
    return report


def _start_failure(reply: AuxReply, timeout: float) -> str | None:
    if reply.status is AuxStatus.TIMEOUT:
        return f"no answer within {timeout:g} s"
    if reply.status is not AuxStatus.OK or reply.content is None:
        return f"could not start ({reply.status.value}): {reply.detail}"
    record = reply.content.config_records.get(_RESULT)
    if record is None or not isinstance(record.get("started"), bool):
        return "sent a malformed job start answer"
    if record.get("started") is not True:
        return str(record.get("reason") or "refused to start")
    return None
