"""What a server's watching costs: watches per folder, never per request; sweeps of a bounded
share of its futures.

inotify watches are a per-user kernel resource (``fs.inotify.max_user_watches``), so a server
driving many datasites must hold a number of them bounded by its folders, and no more
descriptors after a thousand requests than after one.
"""

from __future__ import annotations

import math
import os
import stat
import time
from pathlib import Path

import pytest

from syft_flwr_syftbox.transport import SWEEP_BUDGET
from syft_flwr_syftbox.watcher import inotify_watches

SERVER = "server@limits.test"
APP, EP = "flwr/limits", "messages"
DATASITES = [f"ds{i}@limits.test" for i in range(5)]

pytestmark = pytest.mark.skipif(inotify_watches() is None, reason="counted from Linux's /proc")


def folders(root: Path) -> int:
    """The folders of a tree, ``root`` included."""
    return 1 + sum(len(dirs) for _, dirs, _ in os.walk(root))


def descriptors(data_dir: Path) -> list[str]:
    """What this process holds open for good under ``data_dir`` (the state database) and of
    inotify: the transport's own, not other tests' threads', nor a folder a walk holds for an
    instant (the watcher taking a new folder)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            folder = stat.S_ISDIR(os.stat(f"/proc/self/fd/{fd}").st_mode)
        except OSError:
            continue
        if (target.startswith(str(data_dir)) and not folder) or target == "anon_inode:inotify":
            found.append(target)
    return sorted(found)


def send_round(server) -> None:
    for datasite in DATASITES:
        server.send(datasite, APP, EP, b"request", time.time() + 60)


def test_watches_follow_the_folders_and_not_the_requests(make, data_dir, eventually) -> None:
    before = inotify_watches()
    server = make(SERVER, poll_interval=3600.0)  # no sweep walking the folders meanwhile
    send_round(server)  # creates each datasite's folders for the app, watched as they appear
    tree = data_dir / "datasites"
    eventually(lambda: inotify_watches() == before + folders(tree), "a watch per folder")
    watches, fds = inotify_watches(), descriptors(data_dir)
    assert len(fds) >= 2  # the inotify instance and the state database at least
    for _ in range(40):
        send_round(server)
    assert folders(tree) == watches - before  # 200 more requests, not one more folder
    # events come in order: once the marker folder is watched, every request's was taken
    (tree / "marker").mkdir()
    eventually(lambda: inotify_watches() != watches, "the marker folder watched")
    assert inotify_watches() == watches + 1
    assert descriptors(data_dir) == fds


def test_a_sweep_rechecks_a_bounded_share_of_the_futures_and_in_turn_all(make, monkeypatch) -> None:
    """With events arriving, the sweep is the safety net for a lost one: it rechecks at most
    SWEEP_BUDGET futures (two lookups each: the reply, the request refused by a sync), so
    its cost per poll interval does not grow with the round, and reaches every future."""
    server = make(SERVER, poll_interval=3600.0)
    assert server._watcher.watching
    futures = [
        server.send(DATASITES[i % len(DATASITES)], APP, EP, b"request", time.time() + 60)
        for i in range(5 * SWEEP_BUDGET + 7)
    ]
    looked_up: list[Path] = []
    exists = server.fs.exists
    monkeypatch.setattr(server.fs, "exists", lambda path: looked_up.append(path) or exists(path))
    per_sweep = []
    for _ in range(math.ceil(len(futures) / SWEEP_BUDGET)):
        before = len(looked_up)
        server.sweep()
        per_sweep.append(len(looked_up) - before)
    assert max(per_sweep) <= 2 * SWEEP_BUDGET, per_sweep
    replies = {path.stem for path in looked_up if path.suffix == ".response"}
    assert replies == set(futures)
