"""A real SyftBox network on this machine: the SyftBox 0.4.0 server and one sync client per party.

For end-to-end tests and benchmarks over a real sync, where every party has its own data dir
and sees the others' files only as the SyftBox client downloads them: one cycle late, partly
written, in the order the client chooses. The SyftBox Python stack (``syftbox==0.4.0``: a
FastAPI server and a polling sync client) pins versions that conflict with ours, so it runs
from its own virtual environment (:func:`~syft_flwr.testing.peer_venvs.peer_venv`), as separate
processes, on loopback only, with authentication off (the server's development mode); every
party's ``HOME`` is a folder of the network, so nothing of the developer's own SyftBox is read.

:class:`SyftBoxNetwork` starts and stops them; each wait is bounded and fails with what the
processes printed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from syft_flwr.errors import SyftFlwrError
from syft_flwr.testing.peer_venvs import PeerVenv, peer_venv

__all__ = ["SYFTBOX_VERSION", "Party", "SyftBoxNetwork", "syftbox_venv"]

SYFTBOX_VERSION = "0.4.0"
START_TIMEOUT = 60.0


def syftbox_venv() -> PeerVenv:
    """The environment with the SyftBox Python stack (built on first use)."""
    return peer_venv(f"syftbox-{SYFTBOX_VERSION}", [f"syftbox=={SYFTBOX_VERSION}"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Party:
    """One SyftBox user: its data dir (holding ``datasites/``) and its sync client."""

    email: str
    data_dir: Path
    home: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def datasites(self) -> Path:
        """The party's own copy of every datasite it can read."""
        return self.data_dir / "datasites"

    @property
    def config_path(self) -> Path:
        """The SyftBox client config file (``SYFTBOX_CLIENT_CONFIG_PATH``)."""
        return self.home / ".syftbox" / "config.json"


@dataclass
class SyftBoxNetwork:
    """A SyftBox server and sync clients under ``root``; use as a context manager."""

    root: Path
    venv: PeerVenv = field(default_factory=syftbox_venv)
    parties: dict[str, Party] = field(default_factory=dict)
    server: subprocess.Popen[bytes] | None = None
    url: str = ""

    def __enter__(self) -> SyftBoxNetwork:
        self.start_server()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start_server(self) -> None:
        """Start the SyftBox server on a free loopback port and wait until it answers."""
        port = _free_port()
        folder = self.root / "server"
        folder.mkdir(parents=True, exist_ok=True)
        log = self.root / "server.log"
        env = {
            **_clean_env(),
            "HOME": str(folder),
            "SYFTBOX_DATA_FOLDER": str(folder / "data"),
            "SYFTBOX_AUTH_ENABLED": "false",
            "SYFTBOX_OTEL_ENABLED": "false",
        }
        self.server = subprocess.Popen(
            [
                *(str(self.venv.python), "-m", "uvicorn", "syftbox.server.server:app"),
                *("--host", "127.0.0.1", "--port", str(port)),
            ],
            cwd=folder,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{port}/"
        self._wait(f"the SyftBox server at {self.url}", self._server_answers, self.server, log)

    def add_party(self, email: str) -> Party:
        """Start a sync client for ``email`` with its own data dir; wait until it synced once."""
        home = self.root / "parties" / email
        data_dir = home / "sync"  # not $HOME/SyftBox: the client asks about its default
        home.mkdir(parents=True, exist_ok=True)
        log = home / "client.log"
        config = home / ".syftbox" / "config.json"
        env = {**_clean_env(), "HOME": str(home)}
        process = subprocess.Popen(
            [
                *(str(self.venv.bin("syftbox")), "client", "--email", email),
                *("--data-dir", str(data_dir), "--server", self.url, "--config", str(config)),
                *("--port", "0", "--no-open-dir"),
            ],
            cwd=home,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        party = Party(email, data_dir, home, process, log)
        self.parties[email] = party
        own = data_dir / "datasites" / email / "syftperm.yaml"
        self._wait(f"the sync client of {email}", own.exists, process, log)
        self._wait(
            f"{email}'s datasite to reach the server",
            lambda: self._on_server(email, "syftperm.yaml"),
            process,
            log,
        )
        return party

    def party(self, email: str) -> Party:
        """The party of ``email`` (added before)."""
        return self.parties[email]

    def wait_visible(self, email: str, relative: str, timeout: float = START_TIMEOUT) -> None:
        """Wait until ``datasites/<relative>`` is in ``email``'s copy."""
        path = self.party(email).datasites / relative
        party = self.party(email)
        self._wait(f"{relative} to reach {email}", path.exists, party.process, party.log, timeout)

    @contextmanager
    def stopped(self, email: str) -> Iterator[None]:
        """Stop ``email``'s sync client for the block (its files stay), then start it again."""
        party = self.party(email)
        _terminate(party.process)
        try:
            yield
        finally:
            del self.parties[email]
            self.add_party(email)

    def close(self) -> None:
        """Stop every client, then the server."""
        for party in self.parties.values():
            _terminate(party.process)
        if self.server is not None:
            _terminate(self.server)

    def _server_answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _on_server(self, email: str, relative: str) -> bool:
        return (self.root / "server" / "data" / "snapshot" / email / relative).exists()

    def _wait(
        self,
        what: str,
        condition: Callable[[], bool],
        process: subprocess.Popen[bytes],
        log: Path,
        timeout: float = START_TIMEOUT,
    ) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if process.poll() is not None:
                raise SyftFlwrError(f"{what}: the process exited:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise SyftFlwrError(
                    f"timed out after {timeout:.0f} s waiting for {what}:\n{_tail(log)}"
                )
            time.sleep(0.05)


def _clean_env() -> dict[str, str]:
    """This environment without anything that would point SyftBox at the developer's own."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SYFTBOX_", "SYFT_", "VIRTUAL_ENV", "PYTHON"))
    }


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
