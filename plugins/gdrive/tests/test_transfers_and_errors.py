"""Uploads, downloads and back-pressure: every fault is ridden out, real errors name the fix."""

from __future__ import annotations

import os
import random
import time

import pytest

from syft_flwr_gdrive import (
    CredentialsError,
    DrivePermissionError,
    DriveQuotaError,
    DriveRateLimitError,
    GDriveTransport,
)
from syft_flwr_gdrive.api import DriveApi
from syft_flwr_gdrive.retry import RetryPolicy
from syft_flwr_gdrive.testing import FakeDrive, Fault, FaultPlan

from .conftest import MakeTransport

CHUNK = 256 * 1024


def api_of(make: MakeTransport, email: str = "alice@x.org", **options: object) -> DriveApi:
    transport: GDriveTransport = make(email, **options)
    return transport.api


def names(drive: FakeDrive, email: str) -> list[str]:
    return [f.name for f in drive.store.list(email, "") if not f.mime_type.endswith("folder")]


@pytest.mark.parametrize("fault", list(Fault))
def test_each_fault_is_retried_and_creates_exactly_once(
    make: MakeTransport, drive: FakeDrive, fault: Fault
) -> None:
    api = api_of(make)
    box = api.create_folder("box", None, "test")
    drive.faults.queue(fault, 2, kind="upload.multipart")
    file_id = api.upload("msg.request", box, b"payload", {"k": "v"}, "test")
    assert names(drive, "alice@x.org") == ["msg.request"]
    assert api.download(file_id, 7, "test") == b"payload"


def test_retry_after_is_honoured(make: MakeTransport, drive: FakeDrive) -> None:
    api = api_of(make)
    drive.faults.retry_after = "0.3"
    drive.faults.queue(Fault.TOO_MANY_REQUESTS, kind="files.list")
    waits: list[float] = []
    api.retrier.sleep = lambda seconds: waits.append(seconds)
    api.search("trashed = false", "test")
    assert len(waits) == 1 and waits[0] >= 0.3


def test_backoff_is_exponential_jittered_and_capped() -> None:
    policy = RetryPolicy(attempts=10, base_delay=1.0, max_delay=8.0)
    rng = random.Random(3)
    waits = [policy.delay(n, None, rng) for n in range(1, 8)]
    assert all(0.5 <= waits[0] <= 1.0 and 4.0 <= w <= 8.0 for w in waits[3:])
    assert waits[1] >= 1.0 and waits[2] >= 2.0
    assert policy.delay(1, 100.0, rng) == 100.0, "Retry-After beats our own cap"
    assert policy.delay(1, 1e6, rng) == policy.max_retry_after, "but is bounded too"


def test_back_pressure_is_bounded(make: MakeTransport, drive: FakeDrive) -> None:
    api = api_of(make, retry_attempts=4)
    drive.faults = FaultPlan(rate=1.0, faults=(Fault.RATE_LIMIT,), max_consecutive=100)
    before = drive.count("alice@x.org", "files.list")
    with pytest.raises(DriveRateLimitError, match="4 attempts"):
        api.search("trashed = false", "listing for the test")
    assert drive.count("alice@x.org", "files.list") - before == 4


def test_resumable_upload_survives_faults_on_every_step(
    make: MakeTransport, drive: FakeDrive
) -> None:
    api = api_of(make, resumable_threshold=CHUNK, chunk_size=CHUNK, download_chunk_size=100_000)
    box = api.create_folder("box", None, "test")
    data = os.urandom(5 * CHUNK + 12345)
    drive.faults = FaultPlan(
        rate=0.5, max_consecutive=2, seed=5, kinds=frozenset({"upload.resumable", "upload.chunk"})
    )
    file_id = api.upload("big.request", box, data, {}, "test")
    drive.faults = FaultPlan(
        rate=0.5, max_consecutive=2, seed=6, kinds=frozenset({"files.get_media"})
    )
    assert api.download(file_id, len(data), "test") == data
    assert names(drive, "alice@x.org") == ["big.request"]
    assert drive.count("alice@x.org", "upload.chunk") >= 6
    assert drive.count("alice@x.org", "files.get_media") >= 17


def test_resumable_upload_restarts_an_expired_session(
    make: MakeTransport, drive: FakeDrive
) -> None:
    api = api_of(make, resumable_threshold=CHUNK, chunk_size=CHUNK)
    box = api.create_folder("box", None, "test")
    data = os.urandom(3 * CHUNK)
    original = drive.store.upload
    calls = {"n": 0}

    def forget_once(email: str, upload_id: str):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            drive.store._uploads.pop(upload_id)
        return original(email, upload_id)

    drive.store.upload = forget_once  # type: ignore[method-assign]
    file_id = api.upload("big", box, data, {}, "test")
    assert drive.count("alice@x.org", "upload.resumable") == 2
    assert api.download(file_id, len(data), "test") == data


def test_missing_share_names_the_fix(make: MakeTransport, drive: FakeDrive) -> None:
    alice = api_of(make, "alice@x.org")
    box = alice.create_folder("syft_outbox_inbox_alice@x.org_to_bob@x.org", None, "test")
    bob = api_of(make, "bob@x.org")
    with pytest.raises(DrivePermissionError, match="must share") as denied:
        bob.upload("x", box, b"x", {}, "writing into alice's folder")
    assert "bob@x.org" in str(denied.value) and denied.value.status == 404


def test_storage_quota_names_the_fix(make: MakeTransport, drive: FakeDrive) -> None:
    drive.add_account("robot@proj.iam.gserviceaccount.com", quota=0)
    api = api_of(make, "robot@proj.iam.gserviceaccount.com")
    box = api.create_folder("box", None, "test")
    with pytest.raises(DriveQuotaError, match="shared drive"):
        api.upload("x", box, b"x", {}, "test")


def test_rejected_credentials_say_what_to_do(drive: FakeDrive) -> None:
    from syft_flwr.transport import TransportSettings

    settings = {"api_root": drive.url, "access_token": "revoked"}
    transport = GDriveTransport(TransportSettings("alice@x.org", settings))
    started = time.monotonic()
    with pytest.raises(CredentialsError, match="gdrive login"):
        transport.send("bob@x.org", "flwr/demo", "messages", b"x", time.time() + 5)
    assert time.monotonic() - started < 5
    transport.close()


def test_a_ranged_download_holds_the_body_once(make: MakeTransport, drive: FakeDrive) -> None:
    import tracemalloc

    api = api_of(make, resumable_threshold=CHUNK, chunk_size=CHUNK, download_chunk_size=CHUNK)
    box = api.create_folder("box", None, "test")
    data = os.urandom(64 * CHUNK)
    file_id = api.upload("big.request", box, [data[:12345], data[12345:]], {}, "test")
    tracemalloc.start()
    try:
        body = api.download(file_id, len(data), "test")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert body == data
    assert peak < 1.5 * len(data), f"downloading held {peak / len(data):.2f}x the body"
