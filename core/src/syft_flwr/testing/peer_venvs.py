"""Virtual environments for real peers: programs our tests run beside us, never re-implement.

Some peers cannot share our environment: SyftBox 0.4.0 (server and sync client) and syft-flwr
0.5.3 pin versions of FastAPI, Flower or cryptography that conflict with ours, and syft-flwr
0.5.3 even has our import name. Each gets a virtual environment of its own, built from the
package index on first use and reused afterwards: under ``<this venv>/peers/<name>`` (so a
fresh clone builds each once, and deleting the project's ``.venv`` deletes them too), or under
``SYFT_FLWR_PEER_VENVS`` when set. A build is marked complete only once it succeeded, and
builds of one name are serialised with a file lock, so concurrent test processes share it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from syft_flwr.errors import SyftFlwrError

__all__ = ["PEER_VENVS_ENV", "PeerVenv", "peer_venv"]

PEER_VENVS_ENV = "SYFT_FLWR_PEER_VENVS"
_STAMP = "syft-flwr-peer.json"
_BUILD_TIMEOUT = 900.0


@dataclass(frozen=True)
class PeerVenv:
    """A built peer environment."""

    path: Path

    @property
    def python(self) -> Path:
        """Its interpreter."""
        return self.path / "bin" / "python"

    def bin(self, name: str) -> Path:
        """One of its console scripts."""
        return self.path / "bin" / name


def _root() -> Path:
    explicit = os.environ.get(PEER_VENVS_ENV, "").strip()
    return Path(explicit).expanduser() if explicit else Path(sys.prefix) / "peers"


def peer_venv(
    name: str,
    requirements: Sequence[str],
    *,
    no_deps: Sequence[str] = (),
    python: str | None = None,
) -> PeerVenv:
    """The environment ``name`` with ``requirements`` installed, built now if needed.

    :param requirements: what ``pip install`` gets (resolved together).
    :param no_deps: installed afterwards with ``--no-deps`` (packages whose declared pins are
        wrong for the versions they run on).
    :param python: the interpreter to build it with (this one's ``base`` by default).
    :raises SyftFlwrError: the build failed (pip's output is in the message).
    """
    target = _root() / name
    wanted = hashlib.sha256(json.dumps([list(requirements), list(no_deps)]).encode()).hexdigest()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = target / _STAMP
        if stamp.is_file() and json.loads(stamp.read_text()).get("wanted") == wanted:
            return PeerVenv(target)
        _build(target, requirements, no_deps, python or _base_python())
        stamp.write_text(json.dumps({"wanted": wanted, "built": time.time()}))
    return PeerVenv(target)


def _base_python() -> str:
    """The interpreter this virtual environment was made from."""
    candidate = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return str(candidate) if candidate.exists() else sys.executable


def _build(target: Path, requirements: Sequence[str], no_deps: Sequence[str], python: str) -> None:
    if target.exists():
        subprocess.run(["rm", "-rf", str(target)], check=True)
    steps = [[python, "-m", "venv", str(target)]]
    pip = [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    pip += ["--disable-pip-version-check"]
    steps.append([*pip, *requirements])
    if no_deps:
        steps.append([*pip, "--no-deps", *no_deps])
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, timeout=_BUILD_TIMEOUT)
        if result.returncode != 0:
            raise SyftFlwrError(
                f"cannot build the peer environment {target}: {' '.join(step)} failed:\n"
                f"{result.stdout[-2000:]}{result.stderr[-4000:]}"
            )
