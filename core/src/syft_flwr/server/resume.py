"""Resumable versions of Flower's two training loops.

Flower keeps a run's state (round number, global model, metrics) in local variables of
``Strategy.start`` (message API) and ``Server.fit`` (legacy ``server_fn`` API), so a killed
server process loses it. The loops here do the same work in the same order as Flower 1.41's,
and additionally hand every completed round to a :class:`RoundKeeper`, which persists it; on a
restart they start after the last committed round with the committed model and history, using
the real round numbers (no offset is visible to the strategy or the clients).

The message API is reached by wrapping ``Strategy.start`` while an engine-driven run is active
(:func:`resumable_strategy_start`): a call whose grid belongs to an engine runs the resumable
loop, any other call runs Flower's own. A strategy class that overrides ``start`` itself keeps
its own loop and is not resumable. The legacy API is reached by serving the ``ServerApp``'s
components with a :class:`ResumableServer` (when the app uses Flower's plain ``Server``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import timeit
from collections.abc import Callable, Iterator
from typing import Any, cast

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.compat.common.recorddict_compat import (
    arrayrecord_to_parameters,
    parameters_to_arrayrecord,
)
from flwr.server import Server, ServerApp, ServerAppComponents
from flwr.server.client_manager import ClientManager, SimpleClientManager
from flwr.server.history import History
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.strategy import Strategy as LegacyStrategy
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy

from syft_flwr.server.fragments import RoundEntries
from syft_flwr.server.rounds import RoundKeeper
from syft_flwr.server.snapshot import from_json_value, to_json_value

__all__ = [
    "LEGACY",
    "MESSAGE",
    "ResumableServer",
    "engine_server_fn",
    "resumable_strategy_start",
]

logger = logging.getLogger(__name__)

MESSAGE = "message"
LEGACY = "legacy"

_FLOWER_START = Strategy.start
_patch_lock = threading.Lock()
_patch_users = 0


def _keeper_of(grid: Grid) -> RoundKeeper | None:
    """The round keeper behind ``grid``'s port (the engine, when it persists), if any."""
    return cast("RoundKeeper | None", getattr(getattr(grid, "port", None), "round_keeper", None))


# -- message API ----------------------------------------------------------------------------


def _engine_start(
    self: Strategy,
    grid: Grid,
    initial_arrays: ArrayRecord,
    num_rounds: int = 3,
    timeout: float = 3600,
    train_config: ConfigRecord | None = None,
    evaluate_config: ConfigRecord | None = None,
    evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
) -> Result:
    keeper = _keeper_of(grid)
    if keeper is None:
        return _FLOWER_START(
            self, grid, initial_arrays, num_rounds, timeout, train_config, evaluate_config,
            evaluate_fn,
        )  # fmt: skip
    return run_message_rounds(
        self, keeper, grid, initial_arrays, num_rounds, timeout, train_config, evaluate_config,
        evaluate_fn,
    )  # fmt: skip


@contextlib.contextmanager
def resumable_strategy_start() -> Iterator[None]:
    """Route ``Strategy.start`` calls on engine grids to :func:`run_message_rounds` meanwhile.

    Nested and concurrent uses are counted; Flower's method is back once the last one exits.
    """
    global _patch_users
    with _patch_lock:
        _patch_users += 1
        Strategy.start = _engine_start  # type: ignore[method-assign]
    try:
        yield
    finally:
        with _patch_lock:
            _patch_users -= 1
            if _patch_users == 0:
                Strategy.start = _FLOWER_START  # type: ignore[method-assign]


def run_message_rounds(
    strategy: Strategy,
    keeper: RoundKeeper,
    grid: Grid,
    initial_arrays: ArrayRecord,
    num_rounds: int = 3,
    timeout: float = 3600,
    train_config: ConfigRecord | None = None,
    evaluate_config: ConfigRecord | None = None,
    evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
) -> Result:
    """Flower 1.41's ``Strategy.start`` loop, committing each round to ``keeper``."""
    train_config = ConfigRecord() if train_config is None else train_config
    evaluate_config = ConfigRecord() if evaluate_config is None else evaluate_config
    logger.info("starting %s for %d rounds", type(strategy).__name__, num_rounds)
    strategy.summary()
    result = Result()
    history = _ResultJson(result)
    point = keeper.resume_point(MESSAGE, num_rounds)
    if point is None:
        arrays = initial_arrays
        if evaluate_fn:
            res = evaluate_fn(0, initial_arrays)
            logger.info("initial global evaluation: %s", res)
            if res is not None:
                result.evaluate_metrics_serverapp[0] = res
        first = 1
        aggregated = False
        line = history.add(0, ("server",))
        keeper.commit_round(0, num_rounds, MESSAGE, arrays, history.encoded(False), line)
    else:
        arrays = point.model
        aggregated = history.restore(point.history)
        if aggregated:
            result.arrays = arrays
        first = point.round + 1
        logger.info("resuming after round %d of %d", point.round, num_rounds)
    started = time.time()
    for current_round in range(first, num_rounds + 1):
        logger.info("[ROUND %s/%s]", current_round, num_rounds)
        keeper.begin_round(current_round, num_rounds)
        train_replies = grid.send_and_receive(
            messages=strategy.configure_train(current_round, arrays, train_config, grid),
            timeout=timeout,
        )
        agg_arrays, agg_train_metrics = strategy.aggregate_train(current_round, train_replies)
        if agg_arrays is not None:
            result.arrays = agg_arrays
            arrays = agg_arrays
            aggregated = True
        if agg_train_metrics is not None:
            logger.info("aggregated train metrics: %s", agg_train_metrics)
            result.train_metrics_clientapp[current_round] = agg_train_metrics
        evaluate_replies = grid.send_and_receive(
            messages=strategy.configure_evaluate(current_round, arrays, evaluate_config, grid),
            timeout=timeout,
        )
        agg_evaluate_metrics = strategy.aggregate_evaluate(current_round, evaluate_replies)
        if agg_evaluate_metrics is not None:
            logger.info("aggregated evaluate metrics: %s", agg_evaluate_metrics)
            result.evaluate_metrics_clientapp[current_round] = agg_evaluate_metrics
        if evaluate_fn:
            res = evaluate_fn(current_round, arrays)
            logger.info("global evaluation: %s", res)
            if res is not None:
                result.evaluate_metrics_serverapp[current_round] = res
        line = history.add(current_round, _RESULT_TABLES)
        keeper.commit_round(
            current_round, num_rounds, MESSAGE, arrays, history.encoded(aggregated), line
        )
    logger.info("strategy finished in %.3fs", time.time() - started)
    return result


_RESULT_TABLES = ("train", "evaluate", "server")


class _ResultJson:
    """A ``Result``'s metrics tables in the snapshot's JSON form, each round's entry encoded
    once, when its round is committed (:mod:`syft_flwr.server.fragments`): rebuilding every
    round's tables at every commit would cost O(rounds) per round."""

    def __init__(self, result: Result) -> None:
        self.records = {
            "train": result.train_metrics_clientapp,
            "evaluate": result.evaluate_metrics_clientapp,
            "server": result.evaluate_metrics_serverapp,
        }
        self.tables = {name: RoundEntries(keyed=True) for name in _RESULT_TABLES}

    def add(self, round_: int, names: tuple[str, ...]) -> dict[str, Any]:
        """Take in round ``round_``'s records; its metrics line (``names``' tables)."""
        line = {}
        for name in names:
            record = self.records[name].get(round_)
            value = None if record is None else to_json_value(dict(record))
            if value is not None:
                self.tables[name].put(round_, value)
            line[name] = value
        return line

    def encoded(self, aggregated: bool) -> dict[str, Any]:
        """The history a snapshot carries."""
        value: dict[str, Any] = {name: table.encoded() for name, table in self.tables.items()}
        value["aggregated"] = aggregated
        return value

    def restore(self, history: dict[str, Any]) -> bool:
        """Fill the ``Result`` from a snapshot's history; whether it holds aggregated arrays."""
        for name in _RESULT_TABLES:
            entries = sorted(history.get(name, {}).items(), key=lambda item: int(item[0]))
            for round_, metrics in entries:
                record = MetricRecord(from_json_value(metrics))
                self.records[name][int(round_)] = record
                self.tables[name].put(int(round_), to_json_value(dict(record)))
        return bool(history.get("aggregated"))


# -- legacy API -----------------------------------------------------------------------------


class ResumableServer(Server):
    """Flower's ``Server`` whose ``fit`` commits every round to a :class:`RoundKeeper`.

    ``fit`` is Flower 1.41's ``Server.fit`` with two additions: the initial parameters and each
    round are committed, and a resumed run starts after the last committed round with its
    parameters and history (skipping the initial-parameter request to a client).
    """

    def __init__(
        self, *, client_manager: ClientManager, strategy: LegacyStrategy, keeper: RoundKeeper
    ) -> None:
        super().__init__(client_manager=client_manager, strategy=strategy)
        self.keeper = keeper

    def fit(self, num_rounds: int, timeout: float | None) -> tuple[History, float]:
        """Run federated learning for ``num_rounds`` rounds, resuming if there is a snapshot."""
        point = self.keeper.resume_point(LEGACY, num_rounds)
        if point is None:
            history = History()
            logger.info("[INIT]")
            self.parameters = self._get_initial_parameters(server_round=0, timeout=timeout)
            res = self.strategy.evaluate(0, parameters=self.parameters)
            if res is not None:
                history.add_loss_centralized(server_round=0, loss=res[0])
                history.add_metrics_centralized(server_round=0, metrics=res[1])
            encoded = _HistoryJson()
            self._commit(0, num_rounds, history, encoded, {"server": _legacy_metrics(res)})
            first = 1
        else:
            self.parameters = arrayrecord_to_parameters(point.model, keep_input=True)
            history = _history_from_json(point.history)
            encoded = _HistoryJson(history)
            first = point.round + 1
            logger.info("resuming after round %d of %d", point.round, num_rounds)
        start_time = timeit.default_timer()
        for current_round in range(first, num_rounds + 1):
            logger.info("[ROUND %s]", current_round)
            self.keeper.begin_round(current_round, num_rounds)
            round_metrics: dict[str, Any] = {}
            res_fit = self.fit_round(server_round=current_round, timeout=timeout)
            if res_fit is not None:
                parameters_prime, fit_metrics, _ = res_fit
                if parameters_prime:
                    self.parameters = parameters_prime
                history.add_metrics_distributed_fit(server_round=current_round, metrics=fit_metrics)
                round_metrics["train"] = to_json_value(fit_metrics)
            res_cen = self.strategy.evaluate(current_round, parameters=self.parameters)
            if res_cen is not None:
                loss_cen, metrics_cen = res_cen
                history.add_loss_centralized(server_round=current_round, loss=loss_cen)
                history.add_metrics_centralized(server_round=current_round, metrics=metrics_cen)
                round_metrics["server"] = _legacy_metrics(res_cen)
            res_fed = self.evaluate_round(server_round=current_round, timeout=timeout)
            if res_fed is not None:
                loss_fed, evaluate_metrics_fed, _ = res_fed
                if loss_fed is not None:
                    history.add_loss_distributed(server_round=current_round, loss=loss_fed)
                    history.add_metrics_distributed(
                        server_round=current_round, metrics=evaluate_metrics_fed
                    )
                    round_metrics["evaluate"] = {
                        "loss": loss_fed,
                        **to_json_value(evaluate_metrics_fed),
                    }
            self._commit(current_round, num_rounds, history, encoded, round_metrics)
        return history, timeit.default_timer() - start_time

    def _commit(
        self,
        round_: int,
        num_rounds: int,
        history: History,
        encoded: _HistoryJson,
        round_metrics: dict[str, Any],
    ) -> None:
        encoded.add(history, round_)
        self.keeper.commit_round(
            round_,
            num_rounds,
            LEGACY,
            parameters_to_arrayrecord(self.parameters, keep_input=True),
            encoded.encoded(),
            round_metrics,
        )


def _legacy_metrics(res: tuple[float, dict[str, Any]] | None) -> dict[str, Any] | None:
    if res is None:
        return None
    loss, metrics = res
    return {"loss": loss, **cast(dict[str, Any], to_json_value(metrics))}


_HISTORY_LISTS = ("losses_distributed", "losses_centralized")
_HISTORY_TABLES = ("metrics_distributed_fit", "metrics_distributed", "metrics_centralized")


class _HistoryJson:
    """A ``History`` in the snapshot's JSON form, each round's ``(round, value)`` pairs encoded
    once, when its round is committed (:mod:`syft_flwr.server.fragments`): encoding the whole
    history at every commit would cost O(rounds) per round.

    :param history: the pairs there are already (a resumed run's), encoded here once.
    """

    def __init__(self, history: History | None = None) -> None:
        self.lists = {name: RoundEntries() for name in _HISTORY_LISTS}
        self.tables: dict[str, dict[str, RoundEntries]] = {name: {} for name in _HISTORY_TABLES}
        for name, entries in self.lists.items():
            for pair in getattr(history, name, ()):
                entries.put(pair[0], to_json_value(pair))
        for name, table in self.tables.items():
            for key, pairs in getattr(history, name, {}).items():
                for pair in pairs:
                    table.setdefault(str(key), RoundEntries()).put(pair[0], to_json_value(pair))

    def add(self, history: History, round_: int) -> None:
        """Take in the pairs ``history`` gained in round ``round_`` (each list's last)."""
        for name, entries in self.lists.items():
            pairs = getattr(history, name)
            if pairs and pairs[-1][0] == round_:
                entries.put(round_, to_json_value(pairs[-1]))
        for name, table in self.tables.items():
            for key, pairs in getattr(history, name).items():
                if pairs and pairs[-1][0] == round_:
                    table.setdefault(str(key), RoundEntries()).put(round_, to_json_value(pairs[-1]))

    def encoded(self) -> dict[str, Any]:
        """The history a snapshot carries."""
        value: dict[str, Any] = {name: entries.encoded() for name, entries in self.lists.items()}
        for name, table in self.tables.items():
            value[name] = {key: entries.encoded() for key, entries in table.items()}
        return value


def _history_from_json(value: dict[str, Any]) -> History:
    history = History()
    for name in _HISTORY_LISTS:
        setattr(history, name, [(int(r), float(v)) for r, v in value.get(name, [])])
    for name in _HISTORY_TABLES:
        table = from_json_value(value.get(name, {}))
        setattr(history, name, {k: [(int(r), v) for r, v in pairs] for k, pairs in table.items()})
    return history


class _EngineServerFn:
    """Builds the app's components and serves them with a :class:`ResumableServer`.

    Also accepts a ``server_fn`` returning ``(strategy, config)``, as the syft-flwr reference
    examples do (Flower expects a ``ServerAppComponents``).
    """

    def __init__(self, build: Callable[[Context], Any], keeper: RoundKeeper | None) -> None:
        self.build = build
        self.keeper = keeper

    def __call__(self, context: Context) -> ServerAppComponents:
        components = self.build(context)
        if isinstance(components, tuple) and len(components) == 2:
            strategy, config = components
            components = ServerAppComponents(strategy=strategy, config=config)
        components = cast(ServerAppComponents, components)
        if self.keeper is None:
            return components
        server = components.server
        if server is not None and type(server) is not Server:
            logger.warning(
                "the ServerApp uses its own server class %s: its rounds are not checkpointed, "
                "so an interrupted run starts again from round 1",
                type(server).__name__,
            )
            return components
        client_manager = (
            server.client_manager()
            if server is not None
            else components.client_manager or SimpleClientManager()
        )
        strategy = server.strategy if server is not None else components.strategy or LegacyFedAvg()
        resumable = ResumableServer(
            client_manager=client_manager, strategy=strategy, keeper=self.keeper
        )
        if server is not None:
            resumable.set_max_workers(server.max_workers)
        return ServerAppComponents(
            server=resumable, config=components.config, client_manager=client_manager
        )


@contextlib.contextmanager
def engine_server_fn(server_app: ServerApp, keeper: RoundKeeper | None) -> Iterator[None]:
    """Serve a legacy ``ServerApp`` through :class:`_EngineServerFn` while the block runs.

    Without a keeper only the ``(strategy, config)`` tuple form is adapted. An app built from
    ``server=``/``strategy=``/``config=`` arguments instead of a ``server_fn`` is adapted too.
    Message-API apps (``@app.main()``) are left alone.
    """
    if getattr(server_app, "_main", None) is not None:
        yield
        return
    original = server_app._server_fn
    build = original if original is not None else _fixed_components(server_app)
    server_app._server_fn = _EngineServerFn(build, keeper)
    try:
        yield
    finally:
        server_app._server_fn = original


def _fixed_components(server_app: ServerApp) -> Callable[[Context], ServerAppComponents]:
    components = ServerAppComponents(
        server=server_app._server,
        config=server_app._config,
        strategy=server_app._strategy,
        client_manager=server_app._client_manager,
    )
    return lambda _context: components
