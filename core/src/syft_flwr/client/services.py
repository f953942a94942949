"""The aux topics every datasite answers, whatever its ``ClientApp`` does.

- :data:`PING_TOPIC`: who and when, plus what the datasite offers (liveness checks and
  ``get_clients`` use it);
- :data:`~syft_flwr.services.resources.RESOURCES_CHECK_TOPIC` and
  :data:`~syft_flwr.services.resources.RESOURCES_CANCEL_TOPIC`: reserve and release resources
  in the datasite's :class:`~syft_flwr.services.resources.ReservationBook`;
- :data:`~syft_flwr.services.jobs.JOB_START_TOPIC`: consume a reservation and bind the datasite
  to a run, after which it serves only that run.

A request is always answered with content, also when it is refused (not enough resources, a
bad token, already bound to another run): a refusal is an answer, not a handler failure.
Only a malformed request makes the handler raise (an ``HANDLER_FAILED`` reply).

A server that resumes a run checks resources and starts the job again: the datasite already
serving that run's job (for that same server) answers the check with the resources its job
holds and accepts the start, instead of refusing for lack of what its own job occupies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flwr.app import ConfigRecord, RecordDict

from syft_flwr.errors import ResourceError
from syft_flwr.node_ids import node_id_for, normalise_email
from syft_flwr.services.auxiliary import AuxHandlerRegistry, AuxReply, AuxRequest, AuxStatus
from syft_flwr.services.jobs import JOB_START_TOPIC, build_start_reply, parse_start_request
from syft_flwr.services.resources import (
    OFFER_KEY,
    RESOURCES_CANCEL_TOPIC,
    RESOURCES_CHECK_TOPIC,
    ReservationBook,
    ResourceOffer,
    build_cancel_reply,
    build_check_reply,
    parse_check_request,
    parse_token,
    reported_offer,
)

__all__ = ["PING_TOPIC", "ClientServices", "PingInfo", "parse_ping_reply"]

logger = logging.getLogger(__name__)

PING_TOPIC = "syft_flwr.ping"
"""Aux topic: answer the datasite's email, node id, clock, job run id and offer."""

_PING = "ping"
_RESUMED_TOKEN = "held-by-the-running-job"
"""The token a check answers for a run whose job runs here already (its start is accepted)."""
NO_JOB = -1
"""``job_run_id`` in a ping answer of a datasite that is bound to no run."""


@dataclass(frozen=True)
class PingInfo:
    """What a datasite said about itself in a ping answer.

    :param datasite: its email, as it knows itself.
    :param node_id: its node id.
    :param time: its clock (seconds since the epoch) when it answered.
    :param job_run_id: the run it is bound to by a job start, if any.
    :param offer: what it offers to jobs.
    """

    datasite: str
    node_id: int
    time: float
    job_run_id: int | None
    offer: ResourceOffer | None


def parse_ping_reply(reply: AuxReply) -> PingInfo | None:
    """The :class:`PingInfo` in an answer to :data:`PING_TOPIC`; ``None`` if it has none."""
    if reply.status is not AuxStatus.OK or reply.content is None:
        return None
    record = reply.content.config_records.get(_PING)
    if record is None:
        return None
    datasite, node_id = record.get("datasite"), record.get("node_id")
    moment, job = record.get("time"), record.get("job_run_id")
    if (
        not isinstance(datasite, str)
        or not isinstance(node_id, int)
        or not isinstance(moment, int | float)
        or not isinstance(job, int)
    ):
        logger.warning("ignoring a malformed ping answer from %s", reply.datasite)
        return None
    return PingInfo(
        datasite, node_id, float(moment), None if job == NO_JOB else job, reported_offer(reply)
    )


class ClientServices:
    """Answers the built-in topics for one datasite.

    :param identity: the datasite's email.
    :param book: its reservations (and, through them, its offer).
    :param on_job_started: called with the run id and the starting server's email when a job
        start binds the datasite.
    :param clock: wall-clock seconds, reported by pings.
    """

    def __init__(
        self,
        identity: str,
        book: ReservationBook,
        on_job_started: Callable[[int, str], None] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.identity = identity
        self.book = book
        self._on_job_started = on_job_started
        self._clock = clock
        self._job_run_id: int | None = None
        self._job_holder: str | None = None
        self._lock = threading.Lock()

    @property
    def job_run_id(self) -> int | None:
        """The run a job start bound this datasite to, ``None`` before any."""
        with self._lock:
            return self._job_run_id

    def register(self, registry: AuxHandlerRegistry) -> None:
        """Register every built-in topic in ``registry``.

        :raises AuxError: one of the topics has a handler already.
        """
        registry.register(PING_TOPIC, self.ping)
        registry.register(RESOURCES_CHECK_TOPIC, self.check)
        registry.register(RESOURCES_CANCEL_TOPIC, self.cancel)
        registry.register(JOB_START_TOPIC, self.start_job)

    def ping(self, request: AuxRequest) -> RecordDict:
        """Who this is, its clock, its job and its offer."""
        job = self.job_run_id
        record = ConfigRecord(
            {
                "datasite": self.identity,
                "node_id": node_id_for(self.identity),
                "time": self._clock(),
                "job_run_id": NO_JOB if job is None else job,
            }
        )
        return RecordDict({_PING: record, OFFER_KEY: self.book.offer.to_config()})

    def check(self, request: AuxRequest) -> RecordDict:
        """Reserve the requested resources for the sender if they are free.

        :raises ResourceError: the request is malformed.
        """
        requirement, ttl = parse_check_request(request.content)
        if self._serves_job_of(request):
            logger.info("run %s of %s holds its job here already", request.run_id, request.sender)
            return build_check_reply((True, _RESUMED_TOKEN), self.book.offer)
        result = self.book.reserve(requirement, request.sender, ttl=ttl)
        if result[0]:
            logger.info("reserved %s for %s", requirement, request.sender)
        else:
            logger.info("cannot reserve for %s: %s", request.sender, result[1])
        return build_check_reply(result, self.book.offer)

    def _serves_job_of(self, request: AuxRequest) -> bool:
        """Whether this datasite already serves the job of the request's run, for its sender."""
        with self._lock:
            return self._job_run_id == request.run_id and self._job_holder == normalise_email(
                request.sender
            )

    def cancel(self, request: AuxRequest) -> RecordDict:
        """Release the sender's reservation (``cancelled`` is false if it had none).

        :raises ResourceError: the request carries no token.
        """
        cancelled = self.book.cancel(parse_token(request.content), request.sender)
        return build_cancel_reply(cancelled)

    def start_job(self, request: AuxRequest) -> RecordDict:
        """Consume the sender's reservation and bind this datasite to the run.

        Refused, with the reason, when the token is not valid or the datasite already serves
        another run's job; accepted again for the same run (a server retrying its start).

        :raises ResourceError: the request is malformed.
        """
        run_id, token = parse_start_request(request.content)
        with self._lock:
            if self._job_run_id == run_id and self._job_holder == normalise_email(request.sender):
                logger.info("%s serves the job of run %s already", self.identity, run_id)
                return build_start_reply(True)
            if self._job_run_id is not None and self._job_run_id != run_id:
                reason = f"{self.identity} already serves the job of run {self._job_run_id}"
                return build_start_reply(False, reason)
            try:
                self.book.consume(token, request.sender)
            except ResourceError as exc:
                logger.warning("refusing to start run %s for %s: %s", run_id, request.sender, exc)
                return build_start_reply(False, str(exc))
            self._job_run_id = run_id
            self._job_holder = normalise_email(request.sender)
        logger.info("%s starts serving the job of run %s", self.identity, run_id)
        if self._on_job_started is not None:
            self._on_job_started(run_id, request.sender)
        return build_start_reply(True)
