"""Peak memory of a serving datasite that receives 200 MiB hostile request files.

A real client process (``python -m syft_flwr run PROJECT`` acting as a datasite, encryption
on) serves over a temporary SyftBox folder. Its peak resident set (``VmHWM``) is read once it
is idle (the baseline, measured in the same run), then a stranger writes sparse 200 MiB
``.request`` files into its own sender folder of the datasite's endpoints (Flower messages and
aux), and the aggregator itself sends one file larger than ``max_body_size``. Each is refused
unread (the refusal's ``.response`` appears); then the peak is read again.

Prints both peaks; the headline (last line) is the hostile peak as a ratio of the idle peak.
Target: under 1.2x (it was 498 MB against 89 MB, 5.6x, before files were screened).

    python bench/hostile_memory.py [--files 3] [--size-mib 200]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from figures import add_options, report

DATASITE, AGGREGATOR, STRANGER = "owner@mem.test", "aggregator@mem.test", "mallory@mem.test"
APP = "flwr/mem"
MAX_BODY = 16 * 1024 * 1024


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def project(root: Path, data_dir: Path) -> Path:
    folder = root / "project"
    folder.mkdir()
    (folder / "memapps.py").write_text(
        "from syft_flwr.demo.apps import make_client_app\n\nclient_app = make_client_app()\n"
    )
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [tool.flwr.app.components]
            serverapp = "memapps:server_app"
            clientapp = "memapps:client_app"

            [tool.syft_flwr]
            app_name = "mem"
            datasites = ["{DATASITE}"]
            aggregator = "{AGGREGATOR}"

            [tool.syft_flwr.syftbox]
            data_dir = "{data_dir}"
            max_body_size = {MAX_BODY}
            """
        )
    )
    return folder


def wait_for(path: Path, what: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise RuntimeError(f"the datasite exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def plant(folder: Path, index: int, size: int) -> Path:
    """A sparse request of ``size`` bytes that appears whole; returns its reply's path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"0badf11e-0000-4000-8000-{index:012d}.request"
    hidden = folder / f".{path.name}.tmp"
    with hidden.open("wb") as handle:
        handle.truncate(size)
    hidden.rename(path)
    return path.with_suffix(".response")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3, help="hostile files per endpoint")
    parser.add_argument("--size-mib", type=int, default=200)
    add_options(parser)
    args = parser.parse_args()
    if args.smoke:
        args.files = 1  # the files are sparse: their size costs no disk or time
    size = args.size_mib * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="hostile-mem-") as tmp:
        root = Path(tmp)
        data_dir = root / "SyftBox"
        (data_dir / "datasites").mkdir(parents=True)
        env = {
            **os.environ,
            "HOME": str(root),
            "SYFTBOX_EMAIL": DATASITE,
            "SYFT_FLWR_WORKSPACE": str(root / "workspace"),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "syft_flwr", "run", str(project(root, data_dir))],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            endpoint = data_dir / "datasites" / DATASITE / "app_data" / APP / "rpc"
            wait_for(endpoint / "aux", "the datasite to serve", process)
            time.sleep(1.0)  # settle: the idle peak includes start-up, as the hostile one does
            idle = peak_rss(process.pid)
            replies = [
                plant(endpoint / name / STRANGER, n * args.files + i, size)
                for n, name in enumerate(("messages", "aux"))
                for i in range(args.files)
            ]
            replies.append(plant(endpoint / "messages" / AGGREGATOR, 99, size))
            for reply in replies:
                wait_for(reply, f"the refusal {reply.name}", process)
            hostile = peak_rss(process.pid)
        finally:
            process.kill()
            process.wait()
    count = len(replies)
    print(f"idle peak of a serving datasite:          {idle / 2**20:8.1f} MiB")
    print(
        f"peak after {count} hostile files ({args.size_mib} MiB each): {hostile / 2**20:8.1f} MiB"
    )
    report(
        args,
        "hostile_memory",
        f"peak memory with hostile files vs idle: {hostile / idle:.2f}x",
        ratio=hostile / idle,
        better="lower",
        ours=hostile / 2**20,
        baseline=idle / 2**20,
        unit="MiB",
        ours_label=f"peak after {count} hostile files of {args.size_mib} MiB",
        baseline_label="idle peak of a serving datasite",
    )


if __name__ == "__main__":
    main()
