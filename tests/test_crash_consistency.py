"""Faults keep a run resumable, ends are phases of their own, bad input is refused up front.

In-process runs (the kill campaign with real processes is plugins/syftbox/tests/
test_kill_points.py):

- the medium fails (a read-only datasites folder) or the workspace's disk is full: the run is
  ``interrupted``, not ``failed``, no stop signal is sent, and the next start resumes it;
- a run whose job does not start is ``failed`` and its started datasites are told to stop;
  starting it again says so, ``--fresh`` starts a new one;
- a finished run started again says so and exits 0;
- every configuration mistake is a ``ConfigError`` naming the key and the file (or the flag),
  exit status 2, no traceback, before anything is opened or written.

A read-only folder and a full disk cannot be made for real here (the tests run as root, and
there is no filesystem to fill), so the failing system call is replaced for the one object or
module that makes it, raising the very ``OSError`` the kernel would.
"""

from __future__ import annotations

import errno
import json
import os
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from syft_flwr.cli import EXIT_ERROR, EXIT_FAILED, EXIT_INTERRUPTED, main
from syft_flwr.demo.apps import RoundReport, make_client_app, make_server_app
from syft_flwr.errors import RunInterruptedError
from syft_flwr.server.workspace import Workspace
from syft_flwr.testing.local import LocalFederation
from tests.test_engine_resume import _legacy_options, app_of, legacy_client_app, legacy_strategy

pytestmark = pytest.mark.slow

ROUNDS = 3


def workspace() -> Workspace:
    return Workspace(Path(os.environ["SYFT_FLWR_WORKSPACE"]))


def run_json() -> dict[str, Any]:
    latest = workspace().latest()
    assert latest is not None
    info: dict[str, Any] = json.loads(latest.run_file.read_text())
    return info


def metrics_rounds() -> list[int]:
    latest = workspace().latest()
    assert latest is not None
    return [m["round"] for m in latest.metrics()]


def read_only(*args: object, **kwargs: object) -> None:
    raise OSError(errno.EROFS, "Read-only file system")


def server_transport(federation: LocalFederation) -> Any:
    return next(t for t in federation.transports if t.identity == federation.server_identity)


def after_round(at: int, action: Callable[[], None]) -> Callable[[RoundReport], None]:
    def on_round(report: RoundReport) -> None:
        if report.server_round == at:
            action()

    return on_round


@pytest.fixture
def syftbox(syft_flwr_federation: Callable[..., LocalFederation]) -> LocalFederation:
    return syft_flwr_federation("syftbox", 3)


def test_a_read_only_datasites_folder_interrupts_and_the_run_resumes(
    syftbox: LocalFederation,
) -> None:
    syftbox.start_clients(lambda index: make_client_app())

    def break_the_medium() -> None:
        server_transport(syftbox).fs.write_atomic = read_only

    app = make_server_app(3, ROUNDS, after_round(1, break_the_medium), round_timeout=30)
    with pytest.raises(RunInterruptedError, match="Read-only file system"):
        syftbox.run_server(app)
    info = run_json()
    assert (info["status"], info["round"]) == ("interrupted", 1)
    assert "Read-only file system" in info["error"]
    assert syftbox.stop_reasons == {}, "a stop signal went out: the run looked over"
    reports: list[RoundReport] = []
    syftbox.run_server(make_server_app(3, ROUNDS, reports.append, round_timeout=30))
    syftbox.join_clients()
    info = run_json()
    assert (info["status"], info["resumed"], info["round"]) == ("finished", 1, ROUNDS)
    assert metrics_rounds() == list(range(ROUNDS + 1))
    assert [r.server_round for r in reports] == [2, 3]
    assert [(r.clients, r.failures) for r in reports] == [(3, 0), (3, 0)]
    assert set(syftbox.stop_reasons.values()) == {"Server stopped"}


def test_a_legacy_strategy_that_swallows_the_fault_is_still_interrupted(
    syftbox: LocalFederation,
) -> None:
    """Flower's legacy ``Server`` turns a failed send into one client's failure; the grid
    remembers the fault and the engine refuses to commit the round."""
    syftbox.start_clients(legacy_client_app)

    class BreakAfterRound1(type(legacy_strategy())):  # type: ignore[misc]
        def evaluate(self, server_round: int, parameters: Any) -> Any:
            if server_round == 1:
                server_transport(syftbox).fs.write_atomic = read_only
            return super().evaluate(server_round, parameters)

    with pytest.raises(RunInterruptedError, match=r"round 1 .* is not committed"):
        syftbox.run_server(app_of(BreakAfterRound1(**_legacy_options())))
    assert (run_json()["status"], run_json()["round"]) == ("interrupted", 0)
    syftbox.run_server(app_of(legacy_strategy()))
    syftbox.join_clients()
    assert run_json()["status"] == "finished" and metrics_rounds() == list(range(ROUNDS + 1))


def _full_disk(path: Path) -> tuple[int, str]:
    """:mod:`syft_flwr.files` on a full disk: no temporary file can be made."""
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_workspace_disk_interrupts_with_a_typed_error_and_the_run_resumes(
    federation: LocalFederation,
) -> None:
    federation.start_clients(lambda index: make_client_app())
    disk = pytest.MonkeyPatch()

    def fill_the_disk() -> None:
        disk.setattr("syft_flwr.files._create_temp", _full_disk)

    app = make_server_app(3, ROUNDS, after_round(1, fill_the_disk))
    try:
        with pytest.raises(RunInterruptedError, match="No space left on device"):
            federation.run_server(app)
    finally:
        disk.undo()
    info = run_json()
    # round 1 could not be committed; the full disk refused even the word "interrupted", and
    # "running" is resumable all the same
    assert info["status"] == "running" and info["round"] == 0
    federation.run_server(make_server_app(3, ROUNDS))
    federation.join_clients()
    assert run_json()["status"] == "finished" and metrics_rounds() == list(range(ROUNDS + 1))


# -- the command line ---------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, federation: LocalFederation) -> Callable[..., Path]:
    """``project(extra="", **keys)``: a Flower project on the federation's memory network."""

    def write(extra: str = "", **keys: str) -> Path:
        folder = tmp_path / "project"
        folder.mkdir(exist_ok=True)
        (folder / "apps.py").write_text(
            "from syft_flwr.demo.apps import make_client_app, make_server_app\n"
            f"client_app = make_client_app()\nserver_app = make_server_app(3, {ROUNDS})\n"
        )
        table = {
            "app_name": '"test"',
            "datasites": json.dumps(federation.datasites),
            "aggregator": f'"{federation.server_identity}"',
            "transport": '"memory"',
            **keys,
        }
        body = "\n".join(f"{key} = {value}" for key, value in table.items())
        (folder / "pyproject.toml").write_text(
            textwrap.dedent(
                """\
                [tool.flwr.app.components]
                serverapp = "apps:server_app"
                clientapp = "apps:client_app"

                [tool.syft_flwr]
                """
            )
            + body
            + "\n\n[tool.syft_flwr.memory]\n"
            + f'network = "{federation.options["network"]}"\n'
            + textwrap.dedent(extra)
        )
        return folder

    return write


def serve(federation: LocalFederation, project: Path, count: int = 3) -> list[threading.Thread]:
    """Datasites as ``syft-flwr run`` would serve them (in threads, on the memory network)."""
    threads = []
    for email in federation.datasites[:count]:
        thread = threading.Thread(
            target=main, args=(["run", str(project), "--email", email],), daemon=True
        )
        thread.start()
        threads.append(thread)
    return threads


def join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive(), "a datasite did not stop"


def run_server(project: Path, *flags: str) -> int:
    return main(["run", str(project), "--email", "server@federation.test", *flags])


def test_a_finished_run_started_again_says_so_and_fresh_starts_a_new_one(
    federation: LocalFederation, project: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = project()
    join_after = serve(federation, folder)
    assert run_server(folder) == 0
    join(join_after)
    capsys.readouterr()
    assert run_server(folder) == 0
    out = capsys.readouterr().out
    assert "finished at" in out and f"{ROUNDS} of {ROUNDS} rounds" in out and "--fresh" in out
    assert [run.info().status for run in workspace().runs()] == ["finished"]
    again = serve(federation, folder)
    assert run_server(folder, "--fresh") == 0
    join(again)
    assert [run.info().status for run in workspace().runs()] == ["finished", "finished"]


def test_a_job_that_does_not_start_fails_the_run_for_good(
    federation: LocalFederation, project: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = project(
        """
        [tool.syft_flwr.job]
        min_clients = 3
        start_timeout = 2
        """
    )
    only_one = serve(federation, folder, count=1)
    assert run_server(folder) == EXIT_FAILED
    assert "min_clients is 3" in capsys.readouterr().err
    join(only_one)  # the datasite that started the job was told to stop
    info = run_json()
    assert info["status"] == "failed" and "min_clients" in info["error"]
    assert run_server(folder) == EXIT_FAILED, "a failed job was resumed as if it had started"
    assert "failed at" in capsys.readouterr().out
    assert [run.info().status for run in workspace().runs()] == ["failed"]


@pytest.fixture
def no_traceback(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[list[str]], str]]:
    """``refused(argv)``: run the CLI, expect exit status 2, return its error (no traceback)."""

    def refused(argv: list[str]) -> str:
        capsys.readouterr()
        assert main(argv) == EXIT_ERROR
        err = capsys.readouterr().err
        assert err.startswith("syft-flwr: error: ") and "Traceback" not in err, err
        return err

    yield refused


def test_a_non_utf8_pyproject_names_the_file(
    tmp_path: Path, no_traceback: Callable[[list[str]], str]
) -> None:
    (tmp_path / "pyproject.toml").write_bytes(b'[tool.syft_flwr]\napp_name = "caf\xe9"\n')
    err = no_traceback(["run", str(tmp_path), "--email", "a@x.org"])
    assert str(tmp_path / "pyproject.toml") in err and "UTF-8" in err


def test_a_key_dir_that_is_a_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_traceback: Callable[[list[str]], str]
) -> None:
    not_a_folder = tmp_path / "keys"
    not_a_folder.write_text("")
    monkeypatch.setenv("SYFT_FLWR_KEY_DIR", str(not_a_folder))
    err = no_traceback(["keys", "init", "--email", "alice@x.org"])
    assert f"SYFT_FLWR_KEY_DIR={not_a_folder} is not a folder" in err
    err = no_traceback(["keys", "init", "--email", "alice@x.org", "--key-dir", str(not_a_folder)])
    assert f"--key-dir={not_a_folder} is not a folder" in err


@pytest.mark.parametrize("email", ["..", ".", "../../evil", "a/b@x.org", "x"])
def test_an_unsafe_email_writes_no_key(
    tmp_path: Path, email: str, no_traceback: Callable[[list[str]], str]
) -> None:
    root = tmp_path / "keys" / "deep"
    root.mkdir(parents=True)
    err = no_traceback(["keys", "init", "--email", email, "--key-dir", str(root)])
    assert "--email" in err
    assert list(tmp_path.rglob("keys.json")) == [], "a key file was written"


@pytest.mark.parametrize(
    ("keys", "extra", "expected"),
    [
        ({"aggregator": '"../agg@x.org"'}, "", r"aggregator in \[tool.syft_flwr\] of .*"),
        ({"app_name": '"two words"'}, "", r"app_name in \[tool.syft_flwr\] of .*"),
        (
            {"datasites": '["server@federation.test", "a@x.org"]'},
            "",
            "also listed in datasites",
        ),
        (
            {},
            'email = "server@federation.test"\n',
            r"SYFTBOX_EMAIL=.* but \[tool.syft_flwr.memory\] email",
        ),
    ],
)
def test_config_mistakes_are_refused_before_anything_is_opened(
    project: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    no_traceback: Callable[[list[str]], str],
    keys: dict[str, str],
    extra: str,
    expected: str,
) -> None:
    import re

    folder = project(extra, **keys)
    monkeypatch.setenv("SYFTBOX_EMAIL", "a@x.org")
    err = no_traceback(["run", str(folder)])
    assert re.search(expected, err), err
    if "syft_flwr]" in expected:
        assert str(folder / "pyproject.toml") in err
    assert workspace().runs() == [], "a run was opened"
    assert not Path(os.environ["SYFT_FLWR_WORKSPACE"]).exists()


def test_an_interrupted_run_exits_3(
    federation: LocalFederation, project: Callable[..., Path]
) -> None:
    folder = project()
    threads = serve(federation, folder)

    def fail(*args: object, **kwargs: object) -> str:
        raise RunInterruptedError("the medium failed")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("syft_flwr.run.syftbox_flwr_server", fail)
        assert run_server(folder) == EXIT_INTERRUPTED
    assert run_server(folder) == 0
    join(threads)
