"""Encrypted interoperability with a datasite running the real syft-flwr 0.5.3 over SyftBox.

The datasite is the real package in its own process and virtual environment
(:mod:`syft_flwr_syftbox.testing.syft_flwr_05`: ``syftbox_run_flwr_client`` with encryption on,
its default, and keys bootstrapped by syft-crypto, which publishes only a syft-crypto
``did.json``), serving ``examples/quickstart-numpy``. Our server (``syftbox_flwr_server`` on the
SyftBox transport with ``wire = "syft-rpc"``, encryption on by default, in this process so that
every file it writes or reads can be captured) runs the example's FedAvg ``ServerApp`` over real
files in a temporary SyftBox folder with it and one of our own clients: the 0.5.x datasite is
spoken to in syft-crypto's ``X3DH-SyftBox`` scheme, ours in the native one.

What is asserted: every round completes; the 0.5.x datasite's ``ClientApp`` trained and
evaluated every round and obeyed the stop signal; and every request and response file of the
run, read back from disk, carries only ciphertext: an ``EncryptedPayload`` (with the right
sender and receiver, which the real syft-crypto opens to the base64 Flower protobuf syft-flwr
0.5.x expects) for the 0.5.x datasite, a sealed envelope for ours, and no plaintext Flower
payload in either.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.serde import message_from_proto
from flwr.proto.message_pb2 import Message as ProtoMessage
from flwr.server import ServerApp

from syft_flwr.cli import main
from syft_flwr.config import RuntimeSettings, load_project_config
from syft_flwr.crypto import KeyStore, parse_document
from syft_flwr.crypto.envelope import MAGIC as SEALED_MAGIC
from syft_flwr.crypto.errors import SyftCryptoIdentityError
from syft_flwr.crypto.policy import open_channel
from syft_flwr.fl_orchestrator import syftbox_flwr_client, syftbox_flwr_server
from syft_flwr.flower_config import run_config
from syft_flwr.run import load_component
from syft_flwr.transport import TransportSettings
from syft_flwr_syftbox import SyftBoxTransport
from syft_flwr_syftbox.layout import FileKind, Layout, RpcLocation
from syft_flwr_syftbox.safe_fs import SafeRoot
from syft_flwr_syftbox.testing.syft_flwr_05 import (
    copy_project,
    handled_messages,
    legacy_command,
    party_env,
    syft_flwr_05_venv,
    watching_files,
    write_client_config,
)

_INSTALL = "pip install --no-deps -r plugins/syftbox/interop-requirements.txt"
syft_core = pytest.importorskip("syft_core", reason=f"the SyftBox stack is missing: {_INSTALL}")
syft_crypto = pytest.importorskip("syft_crypto", reason=f"the SyftBox stack is missing: {_INSTALL}")
pytest.importorskip("syft_event", reason=f"the SyftBox stack is missing: {_INSTALL}")
pytest.importorskip("syft_rpc", reason=f"the SyftBox stack is missing: {_INSTALL}")

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "quickstart-numpy"
APP_NAME = "quickstart-numpy"
AGGREGATOR = "aggregator@interop.org"
OURS = "ours@interop.org"
LEGACY = "syft-flwr-05@interop.org"  # syft-core refuses reserved domains such as .test
ROUNDS = 3
STARTUP = 60.0
"""Longest wait for the 0.5.x process to start, bootstrap its keys and watch its folder."""
JOIN = 30.0
PLAINTEXT_MARKERS = (b"local-epochs", b"train_loss", b"eval_loss", b"num-examples")
"""Strings every plaintext train/evaluate message or reply of the example carries."""


@dataclass(frozen=True)
class DiskFile:
    """An RPC file of the run as it was on disk when written or read."""

    location: RpcLocation
    data: bytes


@pytest.fixture
def disk_files(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> list[DiskFile]:
    """Every RPC file the transports of this process wrote or read, read back from disk.

    Files are deleted once their exchange completes, so they are captured at the moment
    the transport writes a file (ours) or has parsed one (the 0.5.x process's responses, or
    requests our client reads): the bytes are whatever is on disk then. A file the transport
    opens more than once (to parse it, then to check it is the real reply) is kept once.
    """
    layout = Layout(data_dir / "datasites")
    seen: list[DiskFile] = []
    known: set[Path] = set()
    lock = threading.Lock()
    original_write, original_open = SafeRoot.write_atomic, SafeRoot.open_file

    def remember(path: Path) -> None:
        location = layout.parse(path)
        if location is None:
            return
        with lock:
            if path not in known:
                known.add(path)
                seen.append(DiskFile(location, path.read_bytes()))

    def write_atomic(self: SafeRoot, path: Path, *args: object, **kwargs: object) -> None:
        original_write(self, path, *args, **kwargs)  # type: ignore[arg-type]
        remember(path)

    @contextmanager
    def open_file(self: SafeRoot, path: Path) -> Iterator[object]:
        with original_open(self, path) as opened:
            yield opened
        remember(path)  # read by the transport: the bytes are on disk still

    monkeypatch.setattr(SafeRoot, "write_atomic", write_atomic)
    monkeypatch.setattr(SafeRoot, "open_file", open_file)
    return seen


@pytest.fixture
def quiet_syft_crypto() -> Iterator[None]:
    """syft-crypto logs through loguru to stderr; keep this process's output readable."""
    from loguru import logger

    logger.disable("syft_crypto")
    yield
    logger.enable("syft_crypto")


def syft_client_config(data_dir: Path, email: str) -> Path:
    """A syft-core client config for ``email`` on the shared folder (as ``syftbox login``
    leaves one)."""
    path = data_dir.parent / f"{email}.config.json"
    config = syft_core.SyftClientConfig(email=email, data_dir=data_dir, path=path)
    config.save()
    return path


@pytest.fixture
def legacy_process(
    data_dir: Path, tmp_path: Path
) -> Iterator[Callable[[int, int], tuple[subprocess.Popen[bytes], Path]]]:
    """Start the real syft-flwr 0.5.3 datasite; wait (bounded) until it serves; kill it after."""
    venv = syft_flwr_05_venv()
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(partition: int, partitions: int) -> tuple[subprocess.Popen[bytes], Path]:
        project = copy_project(
            EXAMPLE,
            tmp_path / "legacy-project",
            app_config={"partition-id": partition, "num-partitions": partitions},
        )
        log = tmp_path / "legacy.log"
        config = write_client_config(data_dir.parent / f"{LEGACY}.config.json", LEGACY, data_dir)
        env = party_env(tmp_path / "legacy-home", config)
        with open(log, "wb") as output:
            process = subprocess.Popen(
                legacy_command(venv, "client", project),
                cwd=project,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        started.append((process, log))
        did = data_dir / "datasites" / LEGACY / "public" / "did.json"
        deadline = time.monotonic() + STARTUP
        while not (watching_files(process) and did.is_file()):
            assert process.poll() is None, f"the 0.5.x client exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, (
                f"the 0.5.x client never started:\n{log.read_text()}"
            )
            time.sleep(0.05)
        return process, log

    yield start
    for process, _ in started:
        if process.poll() is None:
            process.kill()
            process.wait(JOIN)


def open_with_syft_crypto(data_dir: Path, payload: bytes) -> Message:
    """What the real syft-crypto makes of a request body addressed to the 0.5.x datasite."""
    client = syft_core.Client.load(data_dir.parent / f"{LEGACY}.config.json")
    encrypted = syft_crypto.EncryptedPayload.model_validate_json(payload)
    text = syft_crypto.decrypt_message(encrypted, client)
    return message_from_proto(ProtoMessage.FromString(base64.b64decode(text)))


def test_syft_flwr_05_encrypted_client_completes_fedavg_with_our_server(
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    legacy_process: Callable[[int, int], tuple[subprocess.Popen[bytes], Path]],
    disk_files: list[DiskFile],
    quiet_syft_crypto: None,
) -> None:
    legacy, log = legacy_process(1, 2)
    did = json.loads((data_dir / "datasites" / LEGACY / "public" / "did.json").read_bytes())
    assert "syftFlwr" not in did, "the 0.5.x datasite must publish a syft-crypto-only did.json"
    project = copy_project(EXAMPLE, tmp_path / "project")
    config = load_project_config(project)
    server_app = load_component(config, "serverapp", ServerApp, project)
    client_app = load_component(config, "clientapp", ClientApp, project)
    monkeypatch.chdir(project)  # where the example's ServerApp writes its history

    def transport(identity: str, **options: object) -> SyftBoxTransport:
        table = {"data_dir": str(data_dir), **options}
        return SyftBoxTransport(TransportSettings(identity, table, poll_interval=0.2))

    ours = transport(OURS)
    stop_reason: list[str | None] = []
    client_context = Context(
        run_id=0,
        node_id=0,
        node_config={"partition-id": 0, "num-partitions": 2},
        state=RecordDict(),
        run_config=run_config(config),
    )
    thread = threading.Thread(
        target=lambda: stop_reason.append(
            syftbox_flwr_client(
                client_app,
                client_context,
                APP_NAME,
                transport=ours,
                trusted_aggregators=[AGGREGATOR],
            )
        ),
        daemon=True,
    )
    thread.start()
    server = transport(AGGREGATOR, wire="syft-rpc")
    try:
        syftbox_flwr_server(
            server_app,
            Context(
                run_id=0,
                node_id=0,
                node_config={},
                state=RecordDict(),
                run_config=run_config(config),
            ),
            [OURS, LEGACY],
            APP_NAME,
            transport=server,
        )
        assert legacy.wait(JOIN) == 0, f"the 0.5.x client did not stop cleanly:\n{log.read_text()}"
        thread.join(JOIN)
        assert not thread.is_alive() and stop_reason == ["Server stopped"]
    finally:
        server.close()
        ours.close()

    # the run: every round trained and evaluated, and the model improved
    history = json.loads((project / "history.json").read_text())
    losses = [history["train"][str(r)]["train_loss"] for r in range(1, ROUNDS + 1)]
    assert losses == sorted(losses, reverse=True) and history["evaluate"][str(ROUNDS)]

    # the 0.5.x ClientApp trained and evaluated every round, on requests syft-event decrypted
    output = log.read_text()
    assert handled_messages(output) == ["train", "evaluate"] * ROUNDS + ["system"], output
    assert output.count(f"Successfully decrypted request from {AGGREGATOR}") == 2 * ROUNDS + 1

    # the bytes on disk: ciphertext only, in the scheme each datasite speaks
    legacy_files = [f for f in disk_files if f.location.recipient == LEGACY]
    requests = [f for f in legacy_files if f.location.kind is FileKind.REQUEST]
    responses = [f for f in legacy_files if f.location.kind is FileKind.RESPONSE]
    assert len(requests) == 2 * ROUNDS + 1  # the rounds, then the stop signal
    answered = {file.location.id for file in responses}
    assert (
        {file.location.id for file in requests[:-1]}
        <= answered
        <= {file.location.id for file in requests}
    )  # the 0.5.x client may also answer the stop signal before the server leaves
    for file in legacy_files:
        document = json.loads(file.data)
        if document["body"] is None:  # an empty answer: only the stop signal's may be one
            assert file.location.id == requests[-1].location.id, file.location
            continue
        body = base64.urlsafe_b64decode(document["body"])
        payload = json.loads(body)
        assert set(payload) == {"ek", "iv", "ciphertext", "tag", "sender", "receiver", "version"}
        request = file.location.kind is FileKind.REQUEST
        expected = (AGGREGATOR, LEGACY) if request else (LEGACY, AGGREGATOR)
        assert (payload["sender"], payload["receiver"]) == expected
        assert not any(marker in file.data + body for marker in PLAINTEXT_MARKERS), file.location
    first = open_with_syft_crypto(
        data_dir, base64.urlsafe_b64decode(json.loads(requests[0].data)["body"])
    )
    assert first.metadata.message_type == "train" and "arrays" in first.content.array_records

    ours_files = [f for f in disk_files if OURS in (f.location.recipient, f.location.sender)]
    assert len(ours_files) >= 2 * (2 * ROUNDS) + 1
    for file in ours_files:
        body = base64.urlsafe_b64decode(json.loads(file.data)["body"])
        assert body.startswith(SEALED_MAGIC), file.location
        assert not any(marker in file.data + body for marker in PLAINTEXT_MARKERS)


def test_a_run_adopts_a_syft_crypto_identity_only_when_told(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, quiet_syft_crypto: None
) -> None:
    """A datasite that ran syft-flwr 0.5.x keeps its identity: our first run refuses to
    replace its syft-crypto did.json, and after ``keys init --import-syft-crypto`` runs with
    it, publishing a did.json that syft-crypto still accepts."""
    monkeypatch.setattr(syft_crypto.x3dh_bootstrap, "_fetch_did_from_server", lambda *_: None)
    monkeypatch.setenv("SYFTBOX_CLIENT_CONFIG_PATH", str(syft_client_config(data_dir, LEGACY)))
    client = syft_core.Client.load()
    syft_crypto.bootstrap_user(client)
    did = data_dir / "datasites" / LEGACY / "public" / "did.json"
    before = did.read_bytes()
    transport = SyftBoxTransport(TransportSettings(LEGACY, {"data_dir": str(data_dir)}))
    try:
        with pytest.raises(SyftCryptoIdentityError, match="keys init --import-syft-crypto"):
            open_channel(transport, RuntimeSettings())
        assert did.read_bytes() == before and not KeyStore().exists(LEGACY)

        assert main(["keys", "init", "--import-syft-crypto", "--email", LEGACY]) == 0
        channel = open_channel(transport, RuntimeSettings())
        assert channel is not None
        channel.close()
    finally:
        transport.close()
    published = parse_document(did.read_bytes(), LEGACY)
    assert published.keys and published.prekey == parse_document(before, LEGACY).prekey
    assert syft_crypto.ensure_bootstrap(client) is client  # syft-crypto's own check passes
