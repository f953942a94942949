"""The server engine: everything the aggregator does besides running the strategy.

One :class:`ServerEngine` per server run owns the run's :class:`SyftGrid` (Flower messages)
and a second grid for aux requests, and offers, over whichever transport is configured, what
NVIDIA FLARE's ``ServerEngineSpec`` offers (in our own design): the datasites and what is known
about them, aux requests, resource checks and reservations, job start, events, a workspace per
run, and persistence of every completed round so that a killed server resumes the same run.

``syftbox_flwr_server`` builds one and drives it; a ``ServerApp`` reaches it as ``grid.engine``,
and power users build it themselves (:meth:`ServerEngine.from_project`) to register aux
handlers or check resources before the run.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
from flwr.app import ArrayRecord, RecordDict

from syft_flwr import events as ev
from syft_flwr.config import (
    DEFAULT_MSG_TIMEOUT,
    ProjectConfig,
    RuntimeSettings,
    load_project_config,
)
from syft_flwr.crypto.channel import SecureChannel
from syft_flwr.crypto.policy import open_channel
from syft_flwr.errors import (
    EngineError,
    JobStartError,
    MediumError,
    RunInterruptedError,
    SyftFlwrError,
    WorkspaceError,
    WorkspaceIOError,
)
from syft_flwr.events import (
    ExchangeFinished,
    LifecycleEvent,
    MessagePushed,
    ReplyPulled,
    StopSignalSent,
)
from syft_flwr.grid.syft_grid import APP_PREFIX, SyftGrid
from syft_flwr.kill_points import kill_point
from syft_flwr.server.event_bus import EventBus
from syft_flwr.server.journal import FutureJournal
from syft_flwr.server.liveness import DEFAULT_LOST_AFTER, LivenessTracker
from syft_flwr.server.rounds import ResumePoint, RoundKeeper
from syft_flwr.server.snapshot import RunSnapshot, SnapshotStore
from syft_flwr.server.workspace import (
    ABANDONED,
    FAILED,
    FINISHED,
    FINISHING,
    INTERRUPTED,
    RESUMABLE,
    RUNNING,
    RunInfo,
    RunWorkspace,
    Workspace,
)
from syft_flwr.services.auxiliary import (
    AUX_ENDPOINT,
    AuxHandler,
    AuxHandlerRegistry,
    AuxReply,
    AuxSender,
    AuxStatus,
    serve_aux,
)
from syft_flwr.services.jobs import JobPolicy, JobStartReport
from syft_flwr.services.jobs import start_client_job as _start_client_job
from syft_flwr.services.resources import ResourceOffer, ResourceRequirement, check_resources
from syft_flwr.services.resources import cancel_client_resources as _cancel_resources
from syft_flwr.transport import Transport
from syft_flwr.transport_setup import create_transport, resolve_identity
from syft_flwr.workspace_location import workspace_root

__all__ = ["ClientInfo", "ServerEngine", "new_run_id"]

logger = logging.getLogger(__name__)

_ANSWERED = {AuxStatus.OK, AuxStatus.UNKNOWN_TOPIC, AuxStatus.HANDLER_FAILED}


def new_run_id() -> int:
    """A random 63-bit run id (never 0), unique for all practical purposes."""
    return secrets.randbits(63) or 1


@dataclass(frozen=True)
class ClientInfo:
    """What the server knows about one datasite.

    :param state: ``"active"`` (answered), ``"unknown"`` (not yet heard from in this run),
        ``"lost"`` (stopped answering, see :mod:`syft_flwr.server.liveness`) or ``"dropped"``
        (did not start the job, so it is not part of the run).
    :param key_status: ``"native"``, ``"syft-crypto"`` (weaker compatibility scheme),
        ``"missing: <why>"``, or ``"plaintext"`` when encryption is off.
    :param resources: what its last resource check answered, if any.
    """

    datasite: str
    node_id: int
    state: str
    last_seen: float | None
    key_status: str
    resources: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The entry of ``clients.json``."""
        return {
            "node_id": self.node_id,
            "state": self.state,
            "last_seen": self.last_seen,
            "key_status": self.key_status,
            "resources": dict(self.resources),
        }


class ServerEngine:
    """The aggregator's engine for one run over one transport.

    :param transport: the transport, acting as the aggregator.
    :param app_name: the application name (without the ``flwr/`` prefix).
    :param datasites: the datasites taking part.
    :param channel: seal everything with it; ``None`` when encryption is off.
    :param msg_timeout: longest wait for strategy replies (``SYFT_FLWR_MSG_TIMEOUT``).
    :param lost_after: seconds an unanswered request may wait before its datasite is lost.
    :param workspace: where runs are persisted; ``None`` keeps nothing (no resume).
    :param config: the project configuration (job policy, config snapshot).
    :param plugin_manager: where hooks go; the process-wide manager by default.
    """

    def __init__(
        self,
        transport: Transport,
        app_name: str,
        datasites: Iterable[str],
        *,
        channel: SecureChannel | None = None,
        msg_timeout: float = DEFAULT_MSG_TIMEOUT,
        lost_after: float = DEFAULT_LOST_AFTER,
        workspace: Workspace | None = None,
        config: ProjectConfig | None = None,
        plugin_manager: pluggy.PluginManager | None = None,
    ) -> None:
        datasites = list(datasites)
        self.transport = transport
        self.app_name = app_name
        self.channel = channel
        self.config = config or ProjectConfig()
        self.workspace = workspace
        self.events = EventBus(plugin_manager)
        self.liveness = LivenessTracker(datasites, lost_after, self._liveness_changed)
        self.grid = SyftGrid(
            APP_PREFIX + app_name,
            datasites,
            transport,
            msg_timeout=msg_timeout,
            plugin_manager=plugin_manager,
            channel=channel,
            port=self,
        )
        self._node_ids = {datasite: self.grid.node_id_of(datasite) for datasite in datasites}
        self._aux_grid = SyftGrid(
            APP_PREFIX + app_name,
            datasites,
            transport,
            endpoint=AUX_ENDPOINT,
            msg_timeout=msg_timeout,
            plugin_manager=plugin_manager,
            channel=channel,
            reports_rounds=False,
        )
        self.aux = AuxSender(self._aux_grid)
        self.handlers = AuxHandlerRegistry()
        self.run_id: int | None = None
        self.run: RunWorkspace | None = None
        self._snapshots: SnapshotStore | None = None
        self._journal: FutureJournal | None = None
        self._dropped: dict[str, str] = {}
        self._resources: dict[str, Mapping[str, Any]] = {}
        self._serving: threading.Thread | None = None
        self._lock = threading.Lock()
        self._resume_from: int | None = None
        self._outcome: str | None = None
        self._stop_reason: str | None = None
        self._stop_pending: list[str] = []
        self.resumed = False
        """Whether :meth:`open_run` resumed an interrupted run."""
        self._epoch = 0
        self._keeps_rounds = False
        self._answered: set[str] = set()
        self._clients_stale = False
        """Datasites joined since ``clients.json`` was last written (written at the exchange's
        end)."""
        self._answer_lock = threading.Lock()
        self._owned: list[Callable[[], None]] = []

    @classmethod
    def from_project(
        cls,
        datasites: Iterable[str],
        app_name: str,
        project_dir: Path | None = None,
        *,
        transport: Transport | None = None,
        plugin_manager: pluggy.PluginManager | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ServerEngine:
        """An engine configured as ``project_dir``'s ``pyproject.toml`` and the environment say.

        Builds the configured transport (unless ``transport`` is given) and, when encryption
        is on, the secure channel (publishing the aggregator's keys); :meth:`close` releases
        what was built here. The workspace is ``SYFT_FLWR_WORKSPACE``, else
        ``[tool.syft_flwr] workspace``, else ``<project_dir>/.syft_flwr``; ``lost_after`` is
        ``SYFT_FLWR_LOST_AFTER``, else ``[tool.syft_flwr] lost_after``, else 300 s.

        :raises ConfigError: the configuration is incomplete or malformed.
        """
        runtime = RuntimeSettings.from_env(environ)
        config = load_project_config(project_dir)
        owned: list[Callable[[], None]] = []
        if transport is None:
            identity = resolve_identity(config, runtime, None, server=True)
            transport = create_transport(config, runtime, identity, project_dir, plugin_manager)
            owned.append(transport.close)
        try:
            channel = open_channel(transport, runtime, plugin_manager)
            if channel is not None:
                owned.insert(0, channel.close)
            root = workspace_root(config, project_dir, environ)
            engine = cls(
                transport,
                app_name,
                datasites,
                channel=channel,
                msg_timeout=runtime.msg_timeout,
                lost_after=runtime.lost_after or config.lost_after or DEFAULT_LOST_AFTER,
                workspace=None if root is None else Workspace(root, fsync=runtime.fsync),
                config=config,
                plugin_manager=plugin_manager,
            )
        except BaseException:
            for release in owned:
                release()
            raise
        engine._owned = owned
        return engine

    # -- the run ----------------------------------------------------------------------

    def open_run(self, *, fresh: bool = False) -> int:
        """Start a new run, or go on with this app's last one; return the run id.

        The app's last run decides: ``running`` or ``interrupted`` is resumed, ``finishing``
        is taken up to be completed (:attr:`finishing` is then true: call
        :meth:`complete_finishing`, not the app), and a run that is over leaves room for a new
        one. With ``fresh`` an unfinished run is marked ``abandoned`` and a new run starts.

        :raises WorkspaceError: the interrupted run had other datasites (pass ``fresh``), or
            its workspace is unusable.
        :raises EngineError: a run is already open.
        """
        if self.run_id is not None:
            raise EngineError(f"run {self.run_id} is already open on this engine")
        latest = self.workspace.latest_of(self.app_name) if self.workspace else None
        status = latest.info().status if latest is not None else None
        if latest is not None and status == FINISHING and not fresh:
            run_id = self._take_up_finishing(latest)
        elif latest is not None and status in RESUMABLE and not fresh:
            run_id = self._resume(latest)
        else:
            if latest is not None and (status in RESUMABLE or status == FINISHING):
                self._abandon(latest)
            run_id = self._create()
        self.grid.set_run(run_id)
        self._aux_grid.set_run(run_id)
        return run_id

    @property
    def finishing(self) -> bool:
        """Whether the open run only has its stop signals left to send (a restart while it was
        finishing): :meth:`complete_finishing` ends it."""
        return self._outcome is not None

    def _create(self) -> int:
        run_id = new_run_id()
        self.run_id = run_id
        if self.workspace is not None:
            info = RunInfo(
                run_id, self.app_name, tuple(self.grid.datasites), self._transport_name()
            )
            self.run = self.workspace.create_run(info, self.config.source)
            self._attach_state(self.run)
            kill_point("run.created")
        self.fire_event(ev.RUN_STARTED, app_name=self.app_name, datasites=self.grid.datasites)
        return run_id

    def _resume(self, run: RunWorkspace) -> int:
        info = self._same_datasites(run)
        self.run_id = info.run_id
        self.run = run
        self.resumed = True
        self._attach_state(run)
        assert self._snapshots is not None
        snapshot = self._snapshots.load()
        self._resume_from = None if snapshot is None else snapshot.round
        if snapshot is not None:
            self._derive(snapshot)  # repair what a kill after the commit point left behind
        run.update(status=RUNNING, resumed=info.resumed + 1, error=None)
        self.fire_event(
            ev.RUN_RESUMED,
            app_name=self.app_name,
            datasites=self.grid.datasites,
            after_round=self._resume_from,
        )
        logger.info(
            "resuming run %s of %s after round %s", info.run_id, self.app_name, self._resume_from
        )
        return info.run_id

    def _take_up_finishing(self, run: RunWorkspace) -> int:
        info = self._same_datasites(run)
        self.run_id = info.run_id
        self.run = run
        self._snapshots = SnapshotStore(run)
        self.events.subscribe(lambda event: _record_event(run, event))
        self._outcome = info.outcome or FINISHED
        logger.info(
            "run %s of %s was ending: sending the stop signals still due to %s",
            info.run_id,
            self.app_name,
            ", ".join(run.stop_pending()) or "nobody",
        )
        return info.run_id

    def _same_datasites(self, run: RunWorkspace) -> RunInfo:
        info = run.info()
        if sorted(info.datasites) != sorted(self.grid.datasites):
            raise WorkspaceError(
                f"run {info.run_id} of {self.app_name} was interrupted with datasites "
                f"{', '.join(info.datasites)}; this run lists {', '.join(self.grid.datasites)}. "
                f"Start with the same datasites to resume it, or pass fresh=True "
                f"(`syft-flwr run --fresh`) to start a new run"
            )
        return info

    def _abandon(self, run: RunWorkspace) -> None:
        info = run.update(status=ABANDONED, finished_at=time.time())
        if self.transport.capabilities.persistent:
            journal = FutureJournal(run.state_dir, fsync=run.fsync)
            for entry in journal.drop_through(2**62):
                self.transport.forget(entry.future_id)
            journal.close()
        logger.warning("abandoned unfinished run %s (fresh start requested)", info.run_id)

    def _attach_state(self, run: RunWorkspace) -> None:
        self._snapshots = SnapshotStore(run)
        self._keeps_rounds = True
        self.events.subscribe(lambda event: _record_event(run, event))
        if self.transport.capabilities.persistent:
            self._journal = FutureJournal(run.state_dir, fsync=run.fsync)
        else:
            logger.info(
                "the %s transport does not keep futures across restarts: a resumed run "
                "re-sends the round that was in progress",
                self._transport_name(),
            )

    # -- ending a run (a resumable phase of its own) ----------------------------------------

    def begin_finishing(self, error: BaseException | None) -> None:
        """The run's outcome is known: record it, with every datasite's stop signal due.

        From here a restart does not run the app again: it completes the finishing.
        """
        self._require_run()
        self._outcome = FINISHED if error is None else FAILED
        if self.run is not None:
            self.run.update(
                status=FINISHING,
                outcome=self._outcome,
                error=None if error is None else str(error),
                stop_pending=tuple(self.grid.datasites),
            )
            kill_point("run.finishing")
        else:
            self._stop_pending = list(self.grid.datasites)
        self._stop_reason = _stop_reason(error)
        self.fire_event(ev.RUN_FINISHED, error=None if error is None else str(error))

    def complete_finishing(self) -> None:
        """Send the stop signals still due, one datasite at a time, then end the run.

        Each datasite is struck off once its signal is handed to the transport, so a restart
        sends only the missing ones. A datasite that cannot be reached for good (no usable
        keys) is logged and struck off too.

        :raises RunInterruptedError: the medium or the workspace failed; the run stays
            ``finishing`` and the next start goes on from here.
        """
        self._require_run()
        if self._outcome is None:
            raise EngineError("complete_finishing() before begin_finishing()")
        try:
            self._finish_model()
            for datasite in self._pending_stops():
                self._send_stop(datasite)
            if self.run is not None:
                self.run.update(status=self._outcome, finished_at=time.time(), stop_pending=())
                kill_point("run.finished")
                self._write_clients()
        except (MediumError, WorkspaceIOError) as exc:
            raise RunInterruptedError(
                f"run {self.run_id} could not send all its stop signals: {exc}; start it "
                "again to send the rest"
            ) from exc

    def _pending_stops(self) -> list[str]:
        if self.run is None:
            return list(self._stop_pending)
        return list(self.run.stop_pending())

    def _send_stop(self, datasite: str) -> None:
        if self._stop_reason is None:  # a resumed finishing: read run.json once, not n times
            self._stop_reason = self._reason_from_workspace()
        reason = self._stop_reason
        try:
            self.grid.send_stop(datasite, reason=reason)
        except (MediumError, WorkspaceIOError):
            raise
        except SyftFlwrError as exc:
            logger.error("cannot send the stop signal to %s, giving up on it: %s", datasite, exc)
        kill_point("stop.sent")
        if self.run is not None:
            self.run.note_stopped(datasite)
            kill_point("stop.recorded")
        else:
            self._stop_pending.remove(datasite)

    def _reason_from_workspace(self) -> str:
        error = self.run.info().error if self.run is not None else None
        return _stop_reason(None if error is None else RuntimeError(error))

    def _finish_model(self) -> None:
        if self._outcome != FINISHED or self._snapshots is None:
            return
        snapshot = self._snapshots.load()
        if snapshot is not None:
            self._snapshots.write_final_model(snapshot)

    def finish_run(self, error: BaseException | None) -> None:
        """Record the outcome and send every stop signal (:meth:`begin_finishing`, then
        :meth:`complete_finishing`).

        :raises RunInterruptedError: a fault left the run ``finishing``.
        """
        self.begin_finishing(error)
        self.complete_finishing()

    def interrupt(self, fault: BaseException) -> None:
        """Mark the run ``interrupted`` by ``fault`` (best effort: the workspace may be the
        fault); either way it stays resumable."""
        if self.run is None:
            return
        try:
            self.run.update(status=INTERRUPTED, error=str(fault))
        except (WorkspaceError, OSError) as exc:
            logger.error(
                "cannot mark run %s interrupted (%s); it stays resumable", self.run_id, exc
            )
        self.fire_event(ev.RUN_INTERRUPTED, error=str(fault))

    def close(self) -> None:
        """Stop serving aux requests; release the journal and the event log. Idempotent."""
        with self._lock:
            serving, self._serving = self._serving, None
        if serving is not None:
            self.transport.stop()
            serving.join(timeout=10)
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self.run is not None:
            self.run.close()
        owned, self._owned = self._owned, []
        for release in owned:
            release()

    # -- persist and restore (the RoundKeeper contract) ----------------------------------

    def resume_point(self, style: str, num_rounds: int) -> ResumePoint | None:
        """The last committed round of the resumed run, ``None`` when starting afresh.

        :raises WorkspaceError: the snapshot was written by the other strategy style.
        """
        if self._snapshots is None or self._resume_from is None:
            self._note_style(style, num_rounds)
            return None
        snapshot = self._snapshots.load()
        if snapshot is None:
            return None
        if snapshot.style != style:
            raise WorkspaceError(
                f"run {self.run_id} was checkpointed by a {snapshot.style}-style ServerApp, "
                f"this one is {style}-style: resume it with the same app or start --fresh"
            )
        if snapshot.num_rounds != num_rounds:
            logger.warning(
                "run %s was started for %d rounds, now %d are asked: going on to %d",
                self.run_id,
                snapshot.num_rounds,
                num_rounds,
                num_rounds,
            )
        self._resume_from = None  # one training loop per run resumes
        self._note_style(style, num_rounds)
        return ResumePoint(snapshot.round, self._snapshots.model(snapshot), snapshot.history)

    def begin_round(self, round_: int, num_rounds: int) -> None:
        """Round ``round_`` starts: messages pushed from now on belong to it."""
        self._epoch = round_
        self.fire_event(ev.ROUND_STARTED, round=round_, num_rounds=num_rounds)

    def commit_round(
        self,
        round_: int,
        num_rounds: int,
        style: str,
        model: ArrayRecord,
        history: dict[str, Any],
        round_metrics: dict[str, Any],
    ) -> None:
        """Commit round ``round_`` (one step: the snapshot), then derive the rest from it.

        :raises RunInterruptedError: the medium failed during the round: its results are
            incomplete for a reason that is not the datasites', so it is not committed.
        """
        fault = self.grid.fault
        if fault is not None:
            raise RunInterruptedError(
                f"round {round_} of run {self.run_id} is not committed: the transport failed "
                f"during it ({fault}); fix it and start the same command again to resume"
            ) from fault
        if self.run is not None and self._snapshots is not None:
            snapshot = self._snapshots.save(
                round_,
                num_rounds,
                style,
                model,
                history,
                {"time": time.time(), **round_metrics},
            )
            self._derive(snapshot)
        if round_ > 0:
            self.fire_event(ev.ROUND_FINISHED, round=round_, num_rounds=num_rounds)

    def _derive(self, snapshot: RunSnapshot) -> None:
        """Rewrite what the committed snapshot implies; repeating it changes nothing."""
        assert self.run is not None and self._snapshots is not None
        self.run.write_metrics(snapshot.metrics)
        self.run.update(
            round=snapshot.round,
            num_rounds=snapshot.num_rounds,
            style=snapshot.style,
            answered=tuple(sorted(self.answered_datasites())),
        )
        kill_point("round.derived")
        self._drop_committed(snapshot.round)
        self._snapshots.prune_models(snapshot)

    def answered_datasites(self) -> set[str]:
        """The datasites that answered a message of this run (also before a restart)."""
        before = self.run.answered() if self.run is not None else set()
        return before | self._answered

    def silent_datasites(self) -> dict[str, str]:
        """The run's datasites that never answered, each with what it said when it refused
        (or that it never answered at all)."""
        answered = self.answered_datasites()
        return {
            datasite: self.grid.refusals.get(datasite, "it never answered")
            for datasite in self.grid.datasites
            if datasite not in answered
        }

    def _drop_committed(self, round_: int) -> None:
        if self._journal is None:
            return
        for entry in self._journal.drop_through(round_):
            if not entry.collected:
                self.transport.forget(entry.future_id)

    def _note_style(self, style: str, num_rounds: int) -> None:
        if self.run is not None:
            self.run.update(style=style, num_rounds=num_rounds)

    # -- clients ------------------------------------------------------------------------

    def get_clients(self) -> list[ClientInfo]:
        """Every configured datasite with its node id, state, keys and reported resources."""
        infos = []
        for datasite in self._node_ids:
            state = self.liveness.state(datasite)
            if datasite in self._dropped:
                status = "dropped"
            elif state.lost:
                status = "lost"
            elif state.last_seen is not None:
                status = "active"
            else:
                status = "unknown"
            infos.append(
                ClientInfo(
                    datasite,
                    self._node_ids[datasite],
                    status,
                    state.last_seen,
                    self._key_status(datasite),
                    self._resources.get(datasite, {}),
                )
            )
        return infos

    def _key_status(self, datasite: str) -> str:
        if self.channel is None:
            return "plaintext"
        missing = self.channel.missing_keys([datasite])
        if missing:
            return f"missing: {missing[datasite]}"
        return "native" if self.channel.speaks_native(datasite) else "syft-crypto"

    def _write_clients(self) -> None:
        self._clients_stale = False
        if self.run is not None:
            try:
                self.run.write_clients({c.datasite: c.to_json() for c in self.get_clients()})
            except OSError as exc:
                logger.warning("cannot write %s: %s", self.run.clients_file, exc)

    # -- aux requests -------------------------------------------------------------------

    def register_aux_message_handler(self, topic: str, handler: AuxHandler) -> None:
        """Answer datasites' aux requests on ``topic`` with ``handler``.

        The server starts serving aux requests (a background loop on its transport) with the
        first handler, so transports that poll are not polled for nothing.

        :raises AuxError: ``topic`` is not a non-empty string, ``handler`` is not callable,
            or ``topic`` has a handler already.
        """
        self.handlers.register(topic, handler)
        self._serve_aux()

    def send_aux_request(
        self,
        targets: Iterable[str] | None,
        topic: str,
        request: RecordDict,
        timeout: float,
        optional: bool = False,
        secure: bool | None = None,
    ) -> dict[str, AuxReply]:
        """Send ``request`` on ``topic`` to ``targets`` (``None``/empty: every datasite).

        :return: one reply per target, keyed by datasite; a target that did not answer in
            ``timeout`` seconds gets a ``TIMEOUT`` reply.
        :raises AuxError: an unknown target, a bad topic, request or timeout, or
            ``secure=True`` with encryption off; nothing is sent then.
        """
        self._require_run()
        replies = self.aux.send_aux_request(targets, topic, request, timeout, optional, secure)
        self._saw(replies)
        return replies

    def fire_and_forget_aux_request(
        self,
        targets: Iterable[str] | None,
        topic: str,
        request: RecordDict,
        optional: bool = False,
        secure: bool | None = None,
    ) -> dict[str, AuxReply]:
        """Send ``request`` on ``topic`` without waiting (a timeout of 0).

        :return: ``SENT`` or ``UNREACHABLE`` per target.
        """
        self._require_run()
        return self.aux.fire_and_forget_aux_request(targets, topic, request, optional, secure)

    def _saw(self, replies: Mapping[str, AuxReply]) -> None:
        for datasite, reply in replies.items():
            if reply.status in _ANSWERED:
                self.liveness.answered(datasite)

    def _serve_aux(self) -> None:
        with self._lock:
            if self._serving is not None:
                return
            serve_aux(
                self.transport,
                self.grid.app_name,
                self.handlers,
                self.channel,
                senders=self.grid.datasites,
            )
            self._serving = threading.Thread(
                target=self.transport.run, name="syft-flwr-server-aux", daemon=True
            )
            self._serving.start()

    # -- resources and job start ------------------------------------------------------

    def check_client_resources(
        self,
        resource_reqs: Mapping[str, ResourceRequirement | Mapping[str, Any]],
        timeout: float = 30.0,
        *,
        ttl: float | None = None,
    ) -> dict[str, tuple[bool, str]]:
        """Ask each datasite in ``resource_reqs`` whether it can take the job, reserving if so.

        :param ttl: how long reservations last unless used (the datasite's default if ``None``).

        :return: ``(True, reservation_token)`` or ``(False, reason)`` per datasite.
        :raises AuxError: an unknown datasite; nothing is sent then.
        :raises ResourceError: a malformed requirement.
        """
        self._require_run()
        checks = check_resources(self.aux, resource_reqs, timeout, ttl=ttl)
        results: dict[str, tuple[bool, str]] = {}
        for datasite, check in checks.items():
            results[datasite] = (True, check.token) if check.ok else (False, check.reason)
            if check.offer is not None:  # it answered, whether or not it could take the job
                self.liveness.answered(datasite)
                self._resources[datasite] = _offer_json(check.offer)
        self._write_clients()
        return results

    def cancel_client_resources(
        self,
        check_results: Mapping[str, tuple[bool, str]],
        resource_reqs: Mapping[str, ResourceRequirement | Mapping[str, Any]],
        timeout: float = 30.0,
    ) -> None:
        """Release the reservations a :meth:`check_client_resources` made."""
        self._require_run()
        _cancel_resources(self.aux, check_results, resource_reqs, timeout)

    def start_client_job(
        self,
        tokens: Mapping[str, str],
        policy: JobPolicy | None = None,
        timeout: float = 30.0,
    ) -> JobStartReport:
        """Tell the reserved datasites to start serving this run; drop the others from it.

        :param tokens: the reservation token of each datasite (from a resource check).
        :param policy: ``min_clients`` and required datasites; the project's by default.
        :raises JobStartError: the policy is not met (who failed and why is listed).
        """
        run_id = self._require_run()
        policy = (
            policy
            if policy is not None
            else JobPolicy.from_config(self.config, list(self._node_ids))
        )
        report = _start_client_job(self.aux, run_id, tokens, policy, timeout)
        started = set(report.started)
        for datasite in self.grid.datasites:
            if datasite not in started:
                self._dropped.setdefault(
                    datasite, report.failed.get(datasite, "did not start the job")
                )
        if started != set(self.grid.datasites):
            self.grid.retain(report.started)
            self._aux_grid.retain(report.started)
        self._write_clients()
        return report

    def start_configured_job(self) -> JobStartReport | None:
        """Run the project's ``[tool.syft_flwr.job]``: check resources, then start the job.

        Every datasite is asked for the job's ``resources``; those with a reservation are told
        to start. Reservations are released again if the policy is not met.

        :return: who started, or ``None`` when the project configures no job.
        :raises JobStartError: too few datasites started (all failures are listed).
        """
        policy = JobPolicy.from_config(self.config, list(self._node_ids))
        if policy is None:
            return None
        reqs = {datasite: policy.resources for datasite in self.grid.datasites}
        results = self.check_client_resources(
            reqs, timeout=policy.start_timeout, ttl=policy.reservation_ttl
        )
        tokens = {datasite: token for datasite, (ok, token) in results.items() if ok}
        refused = {datasite: reason for datasite, (ok, reason) in results.items() if not ok}
        self._dropped.update(refused)
        try:
            report = self.start_client_job(tokens, policy, policy.start_timeout)
        except JobStartError as exc:
            self.cancel_client_resources(results, reqs, timeout=policy.start_timeout)
            if not refused:
                raise
            lines = "\n".join(f"  {ds}: {why}" for ds, why in refused.items())
            raise JobStartError(f"{exc}\nrefused at the resource check:\n{lines}") from exc
        logger.info("job started at %d of %d datasites", len(report.started), len(self._node_ids))
        return report

    # -- events and workspace -----------------------------------------------------------

    def fire_event(self, name: str, /, **data: Any) -> ev.EngineEvent:
        """Deliver an event to the ``syft_flwr_event`` hook and the run's ``events.jsonl``.

        A raising hook implementation is logged and does not break the run.

        :raises EngineError: ``name`` is not a non-empty string.
        """
        return self.events.fire(name, self.run_id or 0, **data)

    def get_workspace(self) -> RunWorkspace | None:
        """The current run's workspace folder, ``None`` without a workspace."""
        return self.run

    # -- observers ------------------------------------------------------------------------

    # -- the grid's port (syft_flwr.grid.port.GridPort) -----------------------------------

    @property
    def epoch(self) -> int:
        """The round in progress: the strategy grid derives message ids and claims from it."""
        return self._epoch

    @property
    def journal(self) -> FutureJournal | None:
        """The journal of the round in progress, when the run persists over a transport whose
        futures survive a restart."""
        return self._journal

    @property
    def round_keeper(self) -> RoundKeeper | None:
        """Where the resumable strategy loops commit their rounds: this engine, once a run
        workspace is attached for a run in progress; ``None`` when nothing is persisted."""
        return self if self._keeps_rounds else None

    def observe(self, event: LifecycleEvent) -> None:
        """Turn what the strategy grid did into the run's events."""
        data = {k: v for k, v in event.fields().items() if k != "run_id"}
        data["round"] = self._epoch
        if isinstance(event, MessagePushed):
            self.fire_event(ev.MESSAGE_SENT, **data)
        elif isinstance(event, ReplyPulled):
            failed = event.error_code is not None
            self.fire_event(ev.MESSAGE_FAILED if failed else ev.MESSAGE_RECEIVED, **data)
        elif isinstance(event, StopSignalSent):  # plugins had it from the grid: recorded only
            self.events.record(ev.STOP_SIGNAL_SENT, self.run_id or 0, **data)
        elif isinstance(event, ExchangeFinished) and self._clients_stale:
            self._write_clients()

    def answered(self, datasite: str) -> None:
        """``datasite`` really answered a message of this run.

        Noted in the run's workspace at once (the appended line is its commit point), before
        the grid journals the reply: a run resumed from stored replies, or killed between a
        round's snapshot and what is derived from it, still knows every datasite that
        answered, so it never reports one as silent that answered an earlier incarnation of
        the server. ``run.json`` takes them in when the round commits.
        """
        with self._answer_lock:
            if datasite in self._answered:
                return
            self._answered.add(datasite)
            if self.run is not None:
                self.run.note_answered(datasite)

    def _liveness_changed(self, datasite: str, lost: bool, reason: str) -> None:
        name = ev.CLIENT_LOST if lost else ev.CLIENT_JOINED
        log = logger.warning if lost else logger.info
        log("%s %s: %s", datasite, "is lost" if lost else "joined", reason)
        self.fire_event(name, datasite=datasite, reason=reason)
        if lost:
            self._write_clients()
        else:
            # a round's first answers would rewrite clients.json (every datasite) once per
            # datasite, n^2 for n datasites: the exchange's end writes them all at once
            self._clients_stale = True

    def _require_run(self) -> int:
        if self.run_id is None:
            raise EngineError("no run is open: call open_run() first")
        return self.run_id

    def _transport_name(self) -> str:
        return self.config.transport if self.config.source else type(self.transport).__name__


def _stop_reason(error: BaseException | None) -> str:
    return "Server stopped" if error is None else f"Server stopped after an error: {error}"


def _record_event(run: RunWorkspace, event: ev.EngineEvent) -> None:
    try:
        run.append_event(event.to_json())
    except WorkspaceIOError as exc:
        logger.warning("cannot record event %s in %s: %s", event.name, run.events_file, exc)


def _offer_json(offer: ResourceOffer) -> dict[str, Any]:
    return {key: value for key, value in offer.to_config().items()}
