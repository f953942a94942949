"""A federation of separate processes on one local SyftBox folder, ours or syft-flwr 0.5.x's.

Every party is a SyftBox user with its own home, client config and copy of the Flower project,
running as its own process: ours through ``syft-flwr run``, 0.5.x's through its public entry
points (:mod:`syft_flwr_syftbox.testing.syft_flwr_05`). The interoperability tests and
``bench/round.py`` drive the same federations through this one class; every wait is bounded and
a failure carries every party's log.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from syft_flwr.errors import SyftFlwrError
from syft_flwr.testing.peer_venvs import PeerVenv
from syft_flwr_syftbox.testing.syft_flwr_05 import (
    copy_project,
    legacy_command,
    party_env,
    watching_files,
    write_client_config,
)

__all__ = ["FederationError", "Party", "ProcessFederation", "strategy_seconds"]

STARTUP = 90.0
"""Longest wait for a client to bootstrap its keys and watch its folder."""
RUN = 120.0
"""Longest wait for a whole run."""

_STRATEGY_FINISHED = re.compile(r"(?:Strategy execution|strategy) finished in ([0-9.]+)s")


class FederationError(SyftFlwrError):
    """A party never started serving, did not finish in time, or failed; carries every log."""


@dataclass
class Party:
    """One running party: who, which implementation, its project copy, log and process."""

    email: str
    legacy: bool
    side: str
    project: Path
    home: Path
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def config(self) -> Path:
        """The party's SyftBox client config file."""
        return self.home / ".syftbox" / "config.json"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def describe(self) -> str:
        kind = "syft-flwr 0.5.x" if self.legacy else "ours"
        head = f"--- {self.side} {self.email} ({kind}), exit {self.process.poll()}"
        return f"{head}:\n{self.output()[-6000:]}"


class ProcessFederation:
    """Parties of one run of ``example`` on one SyftBox folder under ``root``.

    :param legacy_venv: the syft-flwr 0.5.x environment, needed only to start legacy parties.
    :param datasites: the clients' emails in partition order (a 0.5.x client declares its
        ``partition-id`` in its project, having no node config of its own).
    :param syft_rpc_server: our server speaks ``wire = "syft-rpc"`` (for 0.5.x clients).
    :param environment: extra variables for every party (timeouts, poll intervals).
    """

    def __init__(
        self,
        root: Path,
        example: Path,
        aggregator: str,
        datasites: tuple[str, ...],
        *,
        encrypted: bool,
        legacy_venv: PeerVenv | None = None,
        syft_rpc_server: bool = False,
        environment: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.example = example
        self.aggregator = aggregator
        self.datasites = datasites
        self.encrypted = encrypted
        self.legacy_venv = legacy_venv
        self.syft_rpc_server = syft_rpc_server
        self.environment = environment or {}
        self.data_dir = root / "SyftBox"
        (self.data_dir / "datasites").mkdir(parents=True)
        self.parties: list[Party] = []

    def start(self, email: str, *, legacy: bool) -> Party:
        """Start ``email``'s process; a client is returned once it serves (watches its folder
        and, encrypted, has published its key document)."""
        side = "server" if email == self.aggregator else "client"
        project = self._project(email, legacy, side)
        home = self.root / "homes" / email
        config = write_client_config(home / ".syftbox" / "config.json", email, self.data_dir)
        extra = dict(self.environment)
        if not legacy and "PYTHONPATH" in os.environ:
            # ours run the sources this harness runs from (a checkout's, which an installed
            # copy would otherwise shadow); a 0.5.x party never sees them
            extra.setdefault("PYTHONPATH", os.environ["PYTHONPATH"])
        env = party_env(
            home,
            config,
            SYFT_FLWR_ENCRYPTION_ENABLED="true" if self.encrypted else "false",
            **extra,
        )
        if legacy:
            if self.legacy_venv is None:
                raise FederationError("a syft-flwr 0.5.x party needs legacy_venv")
            command = legacy_command(self.legacy_venv, side, project)
        else:
            command = [sys.executable, "-m", "syft_flwr", "-v", "run", str(project)]
        log = self.root / f"{email}.log"
        with open(log, "wb") as output:
            process = subprocess.Popen(
                command, cwd=project, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        party = Party(email, legacy, side, project, home, log, process)
        self.parties.append(party)
        if side == "client":
            self._wait_ready(party)
        return party

    def finish(self, timeout: float = RUN) -> None:
        """Wait for every process to exit.

        :raises FederationError: one did not exit in ``timeout`` seconds, or exited non-zero.
        """
        deadline = time.monotonic() + timeout
        for party in self.parties:
            try:
                party.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise FederationError(f"{party.email} did not finish\n{self.report()}") from None
        failed = [p for p in self.parties if p.process.returncode != 0]
        if failed:
            raise FederationError(f"{failed[0].email} exited non-zero\n{self.report()}")

    def report(self) -> str:
        """Every party's exit status and the tail of its log."""
        return "\n".join(party.describe() for party in self.parties)

    def close(self) -> None:
        """Kill whatever still runs."""
        for party in self.parties:
            if party.process.poll() is None:
                party.process.kill()
                party.process.wait(30)

    def __enter__(self) -> ProcessFederation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _project(self, email: str, legacy: bool, side: str) -> Path:
        target = self.root / "projects" / email
        if legacy and side == "client":
            position = {
                "partition-id": self.datasites.index(email),
                "num-partitions": len(self.datasites),
            }
            return copy_project(self.example, target, app_config=position)
        syft_rpc = not legacy and side == "server" and self.syft_rpc_server
        return copy_project(
            self.example,
            target,
            extra='\n[tool.syft_flwr.syftbox]\nwire = "syft-rpc"\n' if syft_rpc else "",
        )

    def _wait_ready(self, party: Party) -> None:
        did = self.data_dir / "datasites" / party.email / "public" / "did.json"
        deadline = time.monotonic() + STARTUP
        while not (watching_files(party.process) and (did.is_file() or not self.encrypted)):
            if party.process.poll() is not None or time.monotonic() > deadline:
                raise FederationError(f"a client never started serving\n{self.report()}")
            time.sleep(0.05)


def strategy_seconds(log: str) -> float:
    """The seconds the server's strategy loop reports for all its rounds: Flower's
    ``Strategy.start`` logs ``Strategy execution finished in ...s`` (0.5.x's server runs it),
    our resumable copy of that loop ``strategy finished in ...s``, both timed around the rounds.

    :raises FederationError: the log has no such line (the run did not finish its rounds).
    """
    found = _STRATEGY_FINISHED.findall(log)
    if not found:
        raise FederationError("the server's log has no 'strategy finished in' line")
    return float(found[-1])
