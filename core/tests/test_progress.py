"""What ``syft-flwr run`` shows on the server: live on a terminal, log lines otherwise.

Each test runs a real federation over the memory transport (server and clients in threads),
with one datasite that never serves, so every exchange has replies and a failure (its timeout,
1 s, bounds the wait). Assertions are on the content shown, never on timing.
"""

from __future__ import annotations

import io
import logging
import re
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.server import ServerConfig
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.serverapp import Grid, ServerApp
from rich.console import Console

from syft_flwr.cli import main
from syft_flwr.demo.apps import make_client_app, make_legacy_client_app, make_server_app
from syft_flwr.server.progress import LARGE_TRANSFER, LogDisplay, TerminalDisplay, watching
from syft_flwr.testing.local import LocalFederation

PROGRESS = "syft_flwr.server.progress"
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BIG = 2 * LARGE_TRANSFER

Federation = Callable[..., LocalFederation]


def run_with_a_silent_datasite(federation: LocalFederation) -> None:
    """One FedAvg round (train and evaluate) in which the third datasite never answers."""
    federation.start_clients(lambda index: make_client_app(), skip=frozenset({2}))
    federation.run_server(make_server_app(2, 1, round_timeout=1.0))
    federation.join_clients()


def echo_client() -> ClientApp:
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        return Message(RecordDict({"arrays": message.content["arrays"]}), reply_to=message)

    return app


def big_exchange_server(nbytes: int) -> ServerApp:
    """Sends an ``nbytes`` model to every datasite and waits for it back."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        arrays = ArrayRecord([np.zeros(nbytes // 8)])
        messages = [
            Message(RecordDict({"arrays": arrays}), dst_node_id=node, message_type="train")
            for node in grid.get_node_ids()
        ]
        replies = list(grid.send_and_receive(messages, timeout=30))
        assert [reply.has_error() for reply in replies] == [False]

    return app


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=200), out


def shown(out: io.StringIO) -> str:
    """What the terminal showed, without escape codes and bar glyphs."""
    return ESCAPES.sub("", out.getvalue()).translate({ord(c): None for c in "━╸╺"})


def progress_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == PROGRESS]


def test_the_terminal_shows_replies_failures_bytes_and_time_left(
    syft_flwr_federation: Federation,
) -> None:
    federation = syft_flwr_federation("memory", 3)
    console, out = terminal()
    with watching(federation.manager, TerminalDisplay(console)):
        run_with_a_silent_datasite(federation)
    text = shown(out)
    silent = federation.datasites[2]
    for kind in ("train", "evaluate"):
        # the live line as the exchange starts: none in of three, the deadline ahead
        assert re.search(
            rf"round 1/1 {kind}\s+0/3 replies, 0 failures, [\d.]+ kB moved, [\d.]+ s left",
            text,
        ), text
        assert f"round 1/1 {kind}: failure from {silent} (MESSAGE_UNAVAILABLE)" in text
        assert re.search(rf"round 1/1 {kind}: 2/3 replies, 1 failure, [\d.]+ kB moved", text)
    assert "round 1/1 committed" in text
    assert re.search(r"the ServerApp finished; [\d.]+ kB moved in all", text)


def test_off_a_terminal_every_reply_and_failure_is_one_plain_log_line(
    syft_flwr_federation: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=PROGRESS)
    federation = syft_flwr_federation("memory", 3)
    with watching(federation.manager, LogDisplay()):
        run_with_a_silent_datasite(federation)
    records = progress_lines(caplog)
    messages = [record.getMessage() for record in records]
    silent = federation.datasites[2]
    replies = [m for m in messages if ": reply from " in m]
    failures = [r for r in records if ": failure from " in r.getMessage()]
    assert len(replies) == 4, messages  # two datasites, train and evaluate
    assert all(
        re.search(r"\d/3 replies, 0 failures, [\d.]+ kB moved, [\d.]+ s left", m) for m in replies
    ), replies
    assert [r.levelno for r in failures] == [logging.WARNING] * 2
    assert all(
        f"from {silent} (MESSAGE_UNAVAILABLE); 2/3 replies, 1 failure" in r.getMessage()
        for r in failures
    )
    ends = [m for m in messages if re.fullmatch(r"round 1/1 \w+: 2/3 replies, 1 failure, .*", m)]
    assert len(ends) == 2, messages
    assert sum("waiting for 3 replies" in m for m in messages) == 2
    assert all(m.isprintable() for m in messages), "control characters in a log line"


def test_a_legacy_strategys_calls_per_datasite_make_one_exchange(
    syft_flwr_federation: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    """Flower's legacy ``Server`` asks each datasite in its own ``send_and_receive`` call, from
    a thread pool: the calls of one round's ``train`` (or ``evaluate``) are one exchange."""
    caplog.set_level(logging.INFO, logger=PROGRESS)
    federation = syft_flwr_federation("memory", 3)
    strategy = LegacyFedAvg(min_available_clients=3, min_fit_clients=3, min_evaluate_clients=3)
    app = ServerApp(server_fn=lambda context: (strategy, ServerConfig(2, round_timeout=30)))
    with watching(federation.manager, LogDisplay()):
        federation.start_clients(lambda index: make_legacy_client_app(index, 3))
        federation.run_server(app)
        federation.join_clients()
    messages = [record.getMessage() for record in progress_lines(caplog)]
    rounds = [m for m in messages if m.startswith("round ") and ": reply from " in m]
    assert len(rounds) == 12, messages  # 3 datasites x 2 kinds x 2 rounds
    assert any(m.startswith("get_parameters: reply from ") for m in messages)
    for round_ in (1, 2):
        for kind in ("train", "evaluate"):
            label = f"round {round_}/2 {kind}"
            end = re.compile(rf"{label}: \d/\d replies, .* moved, \S+ s")
            ends = [m for m in messages if end.fullmatch(m)]
            assert ends and ends[-1].startswith(f"{label}: 3/3 replies, 0 failures"), messages
    assert all(m.isprintable() for m in messages)


def test_a_library_run_shows_nothing(
    syft_flwr_federation: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=PROGRESS)
    federation = syft_flwr_federation("memory", 2)
    federation.start_clients(lambda index: make_client_app())
    federation.run_server(make_server_app(2, 1, round_timeout=30.0))
    federation.join_clients()
    assert progress_lines(caplog) == []


def test_a_large_transfer_shows_bytes_of_total(
    syft_flwr_federation: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=PROGRESS)
    federation = syft_flwr_federation("memory", 1)
    console, out = terminal()
    datasite = federation.datasites[0]
    federation.start_clients(lambda index: echo_client())
    with (
        watching(federation.manager, TerminalDisplay(console)),
        watching(federation.manager, LogDisplay()),
    ):
        federation.run_server(big_exchange_server(BIG))
    federation.join_clients()
    text = shown(out)
    # in flight: what the grid knows is the total (the transport reports nothing in between)
    assert re.search(rf"send\s+sending to {re.escape(datasite)}: 0 bytes/2\.1 MB", text), text
    assert f"sent 2.1 MB to {datasite}" in text
    assert f"received 2.1 MB from {datasite}" in text
    assert re.search(r"train: 1/1 replies, 0 failures, 4\.2 MB moved", text), text
    messages = [record.getMessage() for record in progress_lines(caplog)]
    assert f"sending 2.1 MB to {datasite}" in messages
    assert any(
        re.fullmatch(rf"sent 2\.1 MB to {re.escape(datasite)} in [\d.]+ s", m) for m in messages
    ), messages
    assert f"received 2.1 MB from {datasite}" in messages


PROJECT_APPS = """
from syft_flwr.demo.apps import make_client_app, make_legacy_client_app, make_server_app

clientapp = make_client_app()
serverapp = make_server_app(2, 1, round_timeout=1.0)
"""
SERVING = ["a@x.org", "b@x.org"]


def write_project(directory: Path, module: str) -> None:
    """Three datasites of which ``silent@x.org`` never serves; the run may go on without it."""
    (directory / f"{module}.py").write_text(PROJECT_APPS)
    datasites = ", ".join(f'"{email}"' for email in [*SERVING, "silent@x.org"])
    (directory / "pyproject.toml").write_text(
        "[tool.flwr.app.components]\n"
        f'serverapp = "{module}:serverapp"\nclientapp = "{module}:clientapp"\n'
        f'[tool.syft_flwr]\napp_name = "progress"\ndatasites = [{datasites}]\n'
        'aggregator = "agg@x.org"\ntransport = "memory"\ntolerate_dropouts = true\n'
        f'[tool.syft_flwr.memory]\nnetwork = "{module}"\n'
    )


def test_syft_flwr_run_off_a_terminal_logs_the_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    module = f"apps_{uuid.uuid4().hex}"
    write_project(tmp_path, module)
    monkeypatch.delenv("SYFTBOX_EMAIL", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # off a terminal, whatever runs pytest
    with ThreadPoolExecutor(len(SERVING)) as pool:
        clients = [pool.submit(main, ["run", str(tmp_path), "--email", e]) for e in SERVING]
        assert main(["run", str(tmp_path), "--email", "agg@x.org"]) == 0
        assert [client.result(timeout=30) for client in clients] == [0, 0]
    messages = [record.getMessage() for record in progress_lines(caplog)]
    assert sum(": reply from " in m for m in messages) == 4, messages
    assert sum(": failure from silent@x.org (MESSAGE_UNAVAILABLE)" in m for m in messages) == 2
    assert any(
        re.search(r"\d/3 replies, 1 failure, [\d.]+ kB moved, [\d.]+ s left", m) for m in messages
    ), messages
    assert "round 1/1 committed" in messages
    assert all(m.isprintable() for m in messages)


def test_log_lines_on_the_terminal_go_above_the_live_line() -> None:
    from syft_flwr.cli import _logs_above
    from syft_flwr.events import ExchangeStarted

    console, out = terminal()
    handler = logging.StreamHandler(console.file)
    root = logging.getLogger()
    root.addHandler(handler)
    display = TerminalDisplay(console)
    try:
        with _logs_above(console):
            display.syft_flwr_event(
                ExchangeStarted(
                    run_id=1, group_id="1", message_type="train", expected=2, deadline=2e9
                )
            )
            logging.getLogger("flwr").warning("a line of the log")
            display.close()
        assert handler.stream is console.file  # given back
    finally:
        root.removeHandler(handler)
    raw = out.getvalue()
    assert "a line of the log\n" in raw
    # printed where the live line was (erased first), never glued to its end
    assert not re.search(r"left\S*a line of the log", ESCAPES.sub("", raw))
    assert "\x1b[2Ka line of the log" in raw
