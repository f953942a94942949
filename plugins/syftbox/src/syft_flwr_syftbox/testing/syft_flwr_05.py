"""The real syft-flwr 0.5.x as a peer: its own virtual environment and processes.

syft-flwr 0.5.3 has our import name (``syft_flwr``), pins ``flwr`` 1.25 and needs Python 3.12
or 3.13, so it runs in a virtual environment of its own (built on first use, cached; see
:mod:`syft_flwr.testing.peer_venvs`) and only ever as separate processes, through its public
entry points ``syft_flwr.run.syftbox_run_flwr_server`` / ``syftbox_run_flwr_client``. Each
party, ours or 0.5.x's, is a SyftBox user with its own client config file (as ``syftbox
login`` leaves one) on a shared SyftBox folder; its server URL is on loopback, so syft-crypto's
look-up of key documents on the SyftBox server fails at once and it reads the synced files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from syft_flwr.errors import SyftFlwrError
from syft_flwr.testing.peer_venvs import PEER_PYTHON_ENV, PeerVenv, find_python, peer_venv

__all__ = [
    "FLWR_FOR_05",
    "SYFT_FLWR_05",
    "copy_project",
    "handled_messages",
    "legacy_command",
    "party_env",
    "syft_flwr_05_venv",
    "watching_files",
    "write_client_config",
]

SYFT_FLWR_05 = "0.5.3"
FLWR_FOR_05 = "1.25.0"
_PYTHONS = ((3, 12), (3, 14))
_MAIN = (
    "import sys; from pathlib import Path; "
    "from syft_flwr.run import syftbox_run_flwr_client, syftbox_run_flwr_server; "
    "side = {'server': syftbox_run_flwr_server, 'client': syftbox_run_flwr_client}[sys.argv[1]]; "
    "side(Path(sys.argv[2]))"
)


def syft_flwr_05_venv() -> PeerVenv:
    """The environment with ``syft-flwr==0.5.3`` and ``flwr==1.25.0`` (built on first use).

    :raises SyftFlwrError: no Python 3.12/3.13 on this machine, or the build failed.
    """
    python = find_python(*_PYTHONS)
    if python is None:
        raise SyftFlwrError(
            f"syft-flwr {SYFT_FLWR_05} needs Python 3.12 or 3.13 and none was found: install "
            f"one (python3.12 on PATH or a pyenv version), or set {PEER_PYTHON_ENV}"
        )
    return peer_venv(
        f"syft-flwr-{SYFT_FLWR_05}",
        [f"syft-flwr=={SYFT_FLWR_05}", f"flwr=={FLWR_FOR_05}"],
        python=python,
    )


def legacy_command(venv: PeerVenv, side: str, project_dir: Path) -> list[str]:
    """The command running ``side`` ("server" or "client") of ``project_dir`` with 0.5.x."""
    if side not in ("server", "client"):
        raise ValueError(f"side must be 'server' or 'client', not {side!r}")
    return [str(venv.python), "-c", _MAIN, side, str(project_dir)]


def write_client_config(path: Path, email: str, data_dir: Path) -> Path:
    """A SyftBox client config for ``email`` on ``data_dir`` at ``path``, as ``syftbox login``
    writes one (the server is on loopback and never contacted)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "data_dir": str(data_dir),
        "email": email,
        "server_url": "http://127.0.0.1:9/",
        "client_url": "http://127.0.0.1:9/",
    }
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


def watching_files(process: subprocess.Popen[bytes]) -> bool:
    """Whether ``process`` has an inotify watch: its file observer is running.

    A syft-event server handles the requests already waiting, then starts its observer; a
    request written in between is never seen (syft-event's race), so a test starts sending
    only once the observer watches. Read from ``/proc/<pid>/fdinfo`` (Linux).
    """
    fdinfo = Path(f"/proc/{process.pid}/fdinfo")
    try:
        entries = list(fdinfo.iterdir())
    except OSError:
        return False
    for entry in entries:
        try:
            if "inotify wd:" in entry.read_text():
                return True
        except OSError:
            continue
    return False


def party_env(home: Path, config: Path, **extra: str) -> dict[str, str]:
    """The environment of one party's process: its own ``HOME`` and SyftBox client config."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SYFTBOX_", "SYFT_FLWR_", "PYTHONPATH"))
    }
    env.update(
        HOME=str(home), SYFTBOX_CLIENT_CONFIG_PATH=str(config), PYTHONUNBUFFERED="1", **extra
    )
    return env


def copy_project(
    source: Path,
    target: Path,
    *,
    app_config: Mapping[str, int | float | str] | None = None,
    extra: str = "",
) -> Path:
    """A party's own copy of the Flower project ``source``, with ``app_config`` values added
    to ``[tool.flwr.app.config]`` (a 0.5.x datasite's node config is that table) and ``extra``
    TOML appended."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.npz"))
    pyproject = target / "pyproject.toml"
    text = pyproject.read_text()
    if app_config:
        header = "[tool.flwr.app.config]\n"
        if header not in text:
            raise ValueError(f"{pyproject} has no [tool.flwr.app.config] table")
        lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in app_config.items())
        text = text.replace(header, header + lines, 1)
    pyproject.write_text(text + extra)
    return target


def handled_messages(log: str) -> list[str]:
    """What a 0.5.x datasite handled, in order, read from its log: ``train``/``evaluate`` per
    message its ``ClientApp`` processed, ``system`` for the stop signal it obeyed."""
    handled = []
    for line in log.splitlines():
        if "Processing message with metadata" in line:
            handled.append("train" if "message_type='train'" in line else "evaluate")
        elif "Received stop signal" in line:
            handled.append("system")
    return handled
