"""Virtual environments for real peers: programs our tests run beside us, never re-implement.

Some peers cannot share our environment: SyftBox 0.4.0 (server and sync client) and syft-flwr
0.5.3 pin versions of FastAPI, Flower or cryptography that conflict with ours, and syft-flwr
0.5.3 even has our import name. Each gets a virtual environment of its own, built from the
package index on first use and reused afterwards: under ``<this venv>/peers/<name>`` (so a
fresh clone builds each once, and deleting the project's ``.venv`` deletes them too), or under
``SYFT_FLWR_PEER_VENVS`` when set. A build is marked complete only once it succeeded, and
builds of one name are serialised with a file lock, so concurrent test processes share it.

A peer may need a newer Python than ours (syft-flwr 0.5.x requires 3.12): :func:`find_python`
looks for one (``SYFT_FLWR_PEER_PYTHON``, ``python3.N`` on ``PATH``, pyenv's versions).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from syft_flwr.errors import SyftFlwrError

__all__ = ["PEER_PYTHON_ENV", "PEER_VENVS_ENV", "PeerVenv", "find_python", "peer_venv"]

PEER_VENVS_ENV = "SYFT_FLWR_PEER_VENVS"
PEER_PYTHON_ENV = "SYFT_FLWR_PEER_PYTHON"
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


def find_python(minimum: tuple[int, int], below: tuple[int, int] = (4, 0)) -> str | None:
    """An interpreter of a version in ``[minimum, below)``, or ``None`` if there is none.

    Looked for in order: ``SYFT_FLWR_PEER_PYTHON`` (used as given, or an error if it does not
    fit), this interpreter, ``python3.N`` on ``PATH``, then pyenv's installed versions
    (``$PYENV_ROOT``, default ``~/.pyenv``). Each candidate is run to read its real version.

    :raises SyftFlwrError: ``SYFT_FLWR_PEER_PYTHON`` names no fitting interpreter.
    """
    explicit = os.environ.get(PEER_PYTHON_ENV, "").strip()
    if explicit:
        version = _version_of(explicit)
        if version is None or not minimum <= version < below:
            raise SyftFlwrError(
                f"{PEER_PYTHON_ENV}={explicit} is not a Python in "
                f"[{'.'.join(map(str, minimum))}, {'.'.join(map(str, below))})"
            )
        return explicit
    candidates = [sys.executable]
    minors = range(minimum[1], 20) if minimum[0] == 3 else range(0)
    candidates += [found for m in minors if (found := shutil.which(f"python3.{m}"))]
    pyenv = Path(os.environ.get("PYENV_ROOT") or "~/.pyenv").expanduser() / "versions"
    if pyenv.is_dir():
        candidates += sorted(str(p) for p in pyenv.glob("3.*/bin/python3"))
    for candidate in candidates:
        version = _version_of(candidate)
        if version is not None and minimum <= version < below:
            return candidate
    return None


def _version_of(python: str) -> tuple[int, int] | None:
    try:
        result = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = result.stdout.split()
    if result.returncode != 0 or len(parts) != 2:
        return None
    return int(parts[0]), int(parts[1])


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
