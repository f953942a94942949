"""Resource offers, requirements, reservations, and the server's check and cancel helpers."""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flwr.app import ConfigRecord, RecordDict
from hypothesis import given
from hypothesis import strategies as st

from core.tests.aux_network import AuxNetwork
from syft_flwr.errors import AuxError, ResourceError
from syft_flwr.services import resources
from syft_flwr.services.auxiliary import (
    AuxHandlerRegistry,
    AuxReply,
    AuxRequest,
    AuxStatus,
    serve_aux,
)
from syft_flwr.services.resources import (
    DEFAULT_RESERVATION_TTL,
    MAX_RESERVATION_TTL,
    OFFER_KEY,
    RESOURCES_CHECK_TOPIC,
    ReservationBook,
    ResourceCheck,
    ResourceOffer,
    ResourceRequirement,
    as_requirement,
    build_cancel_request,
    build_check_request,
    cancel_client_resources,
    check_client_resources,
    check_reservation_ttl,
    check_resources,
    detect_cpus,
    detect_disk_gb,
    detect_memory_gb,
    parse_check_request,
    parse_token,
    reported_offer,
)

APP = "flwr/resources-test"
SERVER = "server@res.test"
ALICE = "alice@res.test"
BOB = "bob@res.test"
CAROL = "carol@res.test"
WAIT = 20.0
SOURCE = Path("/project/pyproject.toml")

OFFER = ResourceOffer(cpus=8, memory_gb=16, gpus=1, disk_gb=100, datasets=frozenset({"mnist"}))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- offers ------------------------------------------------------------------------------------


def test_offer_takes_every_configured_key() -> None:
    table = {"cpus": 4, "memory_gb": 8.5, "gpus": 2, "disk_gb": 50, "datasets": ["a", " b "]}
    offer = ResourceOffer.from_table(table, source=SOURCE)
    assert offer == ResourceOffer(4, 8.5, 2, 50, frozenset({"a", "b"}))


def test_offer_detects_what_the_table_leaves_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(resources, "detect_cpus", lambda: 3.0)
    monkeypatch.setattr(resources, "detect_memory_gb", lambda: 7.0)
    folders: list[Path] = []
    monkeypatch.setattr(resources, "detect_disk_gb", lambda folder: folders.append(folder) or 9.0)
    offer = ResourceOffer.from_table({}, folder=tmp_path)
    assert offer == ResourceOffer(3.0, 7.0, 0.0, 9.0, frozenset())
    assert folders == [tmp_path]


def test_offer_measures_disk_in_the_home_folder_without_a_project(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    folders: list[Path] = []
    monkeypatch.setattr(resources, "detect_disk_gb", lambda folder: folders.append(folder) or 1.0)
    ResourceOffer.from_table({"cpus": 1, "memory_gb": 1})
    assert folders == [tmp_path]


def test_detection_reads_the_machine(tmp_path: Path) -> None:
    expected_cpus = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    )
    assert detect_cpus() == expected_cpus
    assert detect_memory_gb() > 0
    assert detect_disk_gb(tmp_path) > 0


def test_detection_falls_back_to_zero_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def no_sysconf(name: str) -> int:
        raise ValueError(name)

    monkeypatch.setattr(os, "sysconf", no_sysconf)
    with caplog.at_level(logging.WARNING, logger="syft_flwr.services.resources"):
        assert detect_memory_gb() == 0.0
        assert detect_disk_gb(tmp_path / "missing") == 0.0
    assert "memory_gb" in caplog.text and "disk_gb" in caplog.text


def test_detected_cpus_without_affinity_use_the_cpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert detect_cpus() == 1.0


@pytest.mark.parametrize("key", ["cpus", "memory_gb", "gpus", "disk_gb"])
@pytest.mark.parametrize("value", [True, "4", -1, math.nan, math.inf, [1]])
def test_offer_rejects_a_bad_number_naming_key_and_file(key: str, value: object) -> None:
    with pytest.raises(ResourceError, match=rf"{key} in \[tool.syft_flwr.resources\] of {SOURCE}"):
        ResourceOffer.from_table({key: value}, source=SOURCE)


@pytest.mark.parametrize("value", ["mnist", [1], [""], ["  "], {"a": 1}])
def test_offer_rejects_bad_datasets(value: object) -> None:
    with pytest.raises(ResourceError, match=f"datasets in .* of {SOURCE}"):
        ResourceOffer.from_table({"cpus": 1, "datasets": value}, source=SOURCE)


def test_offer_rejects_unknown_keys_naming_them_and_the_file() -> None:
    with pytest.raises(ResourceError, match=rf"unknown key\(s\) cpu, tpus in .*{SOURCE}"):
        ResourceOffer.from_table({"cpu": 1, "tpus": 2}, source=SOURCE)


def test_offer_table_must_be_a_table() -> None:
    with pytest.raises(ResourceError, match="must be a table"):
        ResourceOffer.from_table([1, 2], source=SOURCE)  # type: ignore[arg-type]


numbers = st.floats(min_value=0, max_value=1e6, allow_nan=False)
names = st.frozensets(st.text(min_size=1, max_size=8).filter(lambda s: s == s.strip() and s))


@given(numbers, numbers, numbers, numbers, names)
def test_offer_survives_a_config_record(
    cpus: float, memory: float, gpus: float, disk: float, datasets: frozenset[str]
) -> None:
    offer = ResourceOffer(cpus, memory, gpus, disk, datasets)
    assert ResourceOffer.from_config(offer.to_config()) == offer


def test_reported_offer_must_be_complete() -> None:
    with pytest.raises(ResourceError, match="lacks gpus"):
        ResourceOffer.from_config({"cpus": 1, "memory_gb": 1, "disk_gb": 1}, "alice's offer")


def test_reported_offer_is_read_from_an_answer(caplog: pytest.LogCaptureFixture) -> None:
    good = RecordDict({OFFER_KEY: OFFER.to_config()})
    assert reported_offer(AuxReply(ALICE, AuxStatus.OK, good)) == OFFER
    assert reported_offer(AuxReply(ALICE, AuxStatus.TIMEOUT)) is None
    assert reported_offer(AuxReply(ALICE, AuxStatus.OK, RecordDict())) is None
    bad = RecordDict({OFFER_KEY: ConfigRecord({"cpus": 1})})
    with caplog.at_level(logging.WARNING, logger="syft_flwr.services.resources"):
        assert reported_offer(AuxReply(ALICE, AuxStatus.OK, bad)) is None
    assert "malformed offer" in caplog.text


# -- requirements ------------------------------------------------------------------------------


def test_requirement_keys_are_all_optional() -> None:
    assert ResourceRequirement.parse({}, "x") == ResourceRequirement()
    assert ResourceRequirement().shortfall(OFFER, {}) is None


@pytest.mark.parametrize(
    ("table", "why"),
    [
        ({"cpus": -2}, "cpus in the job's table must be a non-negative number"),
        ({"gpus": "one"}, "gpus in the job's table"),
        ({"datasets": "mnist"}, "datasets in the job's table"),
        ({"ram": 3}, r"unknown key\(s\) ram in the job's table"),
    ],
)
def test_requirement_errors_name_the_key(table: dict[str, Any], why: str) -> None:
    with pytest.raises(ResourceError, match=why):
        ResourceRequirement.parse(table, "the job's table")


def test_as_requirement_passes_requirements_through_and_parses_tables() -> None:
    requirement = ResourceRequirement(cpus=1)
    assert as_requirement(requirement, "x") is requirement
    assert as_requirement({"cpus": 1}, "x") == requirement
    with pytest.raises(ResourceError, match="the table must be a table"):
        as_requirement(3, "the table")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("requirement", "held", "reason"),
    [
        (ResourceRequirement(cpus=4), {"cpus": 6}, "needs 4 cpus, 2 free of 8"),
        (ResourceRequirement(memory_gb=32), {}, "needs 32 GB of memory, 16 free of 16"),
        (ResourceRequirement(gpus=2), {}, "needs 2 gpus, 1 free of 1"),
        (ResourceRequirement(disk_gb=1), {"disk_gb": 100}, "needs 1 GB of disk, 0 free of 100"),
        (
            ResourceRequirement(cpus=9, datasets=frozenset({"cifar", "mnist"})),
            {},
            "needs 9 cpus, 8 free of 8; needs dataset(s) cifar; offers mnist",
        ),
    ],
)
def test_shortfall_says_what_is_short(
    requirement: ResourceRequirement, held: dict[str, float], reason: str
) -> None:
    assert requirement.shortfall(OFFER, held) == reason


@given(
    st.tuples(numbers, numbers, numbers, numbers),
    st.tuples(numbers, numbers, numbers, numbers),
    names,
    names,
)
def test_a_requirement_fits_exactly_when_each_part_fits(
    offered: tuple[float, ...],
    needed: tuple[float, ...],
    have: frozenset[str],
    want: frozenset[str],
) -> None:
    offer = ResourceOffer(*offered, datasets=have)
    requirement = ResourceRequirement(*needed, datasets=want)
    fits = all(n <= o for n, o in zip(needed, offered, strict=True)) and want <= have
    assert (requirement.shortfall(offer, {}) is None) is fits


@given(numbers, numbers, numbers, numbers, names)
def test_requirement_survives_a_config_record(
    cpus: float, memory: float, gpus: float, disk: float, datasets: frozenset[str]
) -> None:
    requirement = ResourceRequirement(cpus, memory, gpus, disk, datasets)
    assert ResourceRequirement.parse(requirement.to_config(), "x") == requirement
    assert ResourceRequirement.parse(ResourceRequirement().to_config(), "x") == (
        ResourceRequirement()
    )


# -- reservations ------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def book(clock: FakeClock) -> ReservationBook:
    return ReservationBook(OFFER, ttl=60, clock=clock)


def test_reserving_holds_resources_until_cancelled(book: ReservationBook) -> None:
    ok, token = book.reserve(ResourceRequirement(cpus=6, gpus=1), SERVER)
    assert ok and len(token) >= 32
    assert book.held() == {"cpus": 6, "memory_gb": 0, "gpus": 1, "disk_gb": 0}
    assert book.reserve(ResourceRequirement(cpus=4), SERVER) == (
        False,
        "needs 4 cpus, 2 free of 8",
    )
    assert book.cancel(token, SERVER) is True
    assert book.cancel(token, SERVER) is False
    assert book.reserve(ResourceRequirement(cpus=4), SERVER)[0]


def test_tokens_are_unique(book: ReservationBook) -> None:
    tokens = {book.reserve(ResourceRequirement(), SERVER)[1] for _ in range(100)}
    assert len(tokens) == 100


def test_reservations_expire_on_their_own(book: ReservationBook, clock: FakeClock) -> None:
    ok, token = book.reserve(ResourceRequirement(cpus=8), SERVER)
    assert ok and not book.reserve(ResourceRequirement(cpus=1), SERVER)[0]
    clock.now += 59.9
    assert book.held()["cpus"] == 8
    clock.now += 0.1
    assert book.held()["cpus"] == 0
    with pytest.raises(ResourceError, match="has expired"):
        book.consume(token, SERVER)
    assert book.cancel(token, SERVER) is False


def test_a_reservation_may_ask_for_its_own_ttl(book: ReservationBook, clock: FakeClock) -> None:
    _, token = book.reserve(ResourceRequirement(cpus=1), SERVER, ttl=5)
    clock.now += 5
    with pytest.raises(ResourceError, match="has expired"):
        book.consume(token, SERVER)


def test_consume_turns_a_reservation_into_the_jobs(book: ReservationBook, clock: FakeClock) -> None:
    _, token = book.reserve(ResourceRequirement(cpus=2), SERVER)
    consumed = book.consume(token, SERVER)
    assert consumed.holder == SERVER and math.isinf(consumed.expires_at)
    clock.now += 10 * DEFAULT_RESERVATION_TTL
    assert book.held()["cpus"] == 2  # the job keeps what it reserved
    assert book.cancel(token, SERVER) is False
    with pytest.raises(ResourceError, match="already used"):
        book.consume(token, SERVER)


def test_consume_refuses_unknown_cancelled_and_foreign_tokens(book: ReservationBook) -> None:
    with pytest.raises(ResourceError, match="is unknown"):
        book.consume("nope", SERVER)
    _, token = book.reserve(ResourceRequirement(), SERVER)
    assert book.cancel(token, "other@res.test") is False
    with pytest.raises(ResourceError, match=f"issued to {SERVER}"):
        book.consume(token, "other@res.test")
    book.cancel(token, SERVER)
    with pytest.raises(ResourceError, match="was cancelled"):
        book.consume(token, SERVER)


def test_retired_tokens_are_remembered_up_to_a_bound(book: ReservationBook) -> None:
    tokens = [book.reserve(ResourceRequirement(), SERVER)[1] for _ in range(1100)]
    for token in tokens:
        book.cancel(token, SERVER)
    with pytest.raises(ResourceError, match="is unknown"):
        book.consume(tokens[0], SERVER)
    with pytest.raises(ResourceError, match="was cancelled"):
        book.consume(tokens[-1], SERVER)


def test_concurrent_reservations_never_overbook(book: ReservationBook) -> None:
    results: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def reserve() -> None:
        barrier.wait(WAIT)
        ok, _ = book.reserve(ResourceRequirement(cpus=1), SERVER)
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=reserve) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert sorted(results) == [False] * 8 + [True] * 8


@pytest.mark.parametrize("ttl", [0, -1, math.nan, math.inf, True, "60", MAX_RESERVATION_TTL + 1])
def test_reservation_ttls_are_checked(ttl: object) -> None:
    with pytest.raises(ResourceError, match="the reservation ttl must be a number of seconds"):
        ReservationBook(OFFER, ttl=ttl)  # type: ignore[arg-type]
    with pytest.raises(ResourceError, match="the reservation ttl"):
        ReservationBook(OFFER).reserve(ResourceRequirement(), SERVER, ttl=ttl)  # type: ignore[arg-type]
    with pytest.raises(ResourceError, match=r"^where must"):
        check_reservation_ttl(ttl, "where")


# -- wire records ------------------------------------------------------------------------------


def test_check_request_round_trips() -> None:
    requirement = ResourceRequirement(cpus=2, datasets=frozenset({"mnist"}))
    assert parse_check_request(build_check_request(requirement, None)) == (requirement, None)
    assert parse_check_request(build_check_request(requirement, 30.0)) == (requirement, 30.0)


def test_malformed_check_requests_are_named() -> None:
    with pytest.raises(ResourceError, match="needs a 'requirement'"):
        parse_check_request(RecordDict())
    bad_ttl = build_check_request(ResourceRequirement(), None)
    bad_ttl["reservation"] = ConfigRecord({"ttl": -1})
    with pytest.raises(ResourceError, match="the asked ttl"):
        parse_check_request(bad_ttl)


def test_tokens_are_read_from_requests() -> None:
    assert parse_token(build_cancel_request("abc")) == "abc"
    with pytest.raises(ResourceError, match="no reservation token"):
        parse_token(RecordDict())
    with pytest.raises(ResourceError, match="no reservation token"):
        parse_token(RecordDict({"reservation": ConfigRecord({"token": ""})}))


# -- the server's helpers, over real transports ------------------------------------------------


@pytest.fixture
def federation() -> Iterator[AuxNetwork]:
    built = AuxNetwork(APP, SERVER, [ALICE, BOB, CAROL], OFFER, run_id=11)
    yield built
    built.close()


def test_check_reserves_at_each_datasite_that_can_take_the_job(federation: AuxNetwork) -> None:
    federation.datasite(ALICE)
    federation.datasite(BOB, ResourceOffer(1, 2, 0, 10, frozenset()))
    sender = federation.sender([ALICE, BOB])
    results = check_client_resources(
        sender, {ALICE: {"cpus": 2, "datasets": ["mnist"]}, BOB: {"cpus": 2}}, WAIT
    )
    assert results[ALICE][0] is True and len(results[ALICE][1]) >= 32
    assert results[BOB] == (False, "needs 2 cpus, 1 free of 1")
    assert federation.books[ALICE].held()["cpus"] == 2
    assert federation.books[BOB].held()["cpus"] == 0


def test_check_resources_keeps_the_reported_offers(federation: AuxNetwork) -> None:
    federation.datasite(ALICE)
    checks = check_resources(federation.sender([ALICE]), {ALICE: ResourceRequirement()}, WAIT)
    assert checks[ALICE].ok and checks[ALICE].offer == OFFER
    assert checks[ALICE].result == (True, checks[ALICE].token)
    assert ResourceCheck(ALICE, False, reason="r").result == (False, "r")


def test_check_reports_silence_and_missing_support(federation: AuxNetwork) -> None:
    federation.datasite(ALICE, builtins=False)  # serves aux, but not resource checks
    federation.transport(CAROL)  # never serves
    sender = federation.sender([ALICE, CAROL])
    results = check_client_resources(sender, {ALICE: {}}, WAIT)
    assert results[ALICE][0] is False
    assert "could not check resources (unknown-topic)" in results[ALICE][1]
    results = check_client_resources(sender, {CAROL: {}}, 0.3)
    assert results[CAROL] == (False, f"no answer from {CAROL} within 0.3 s")


def test_check_asks_for_the_reservation_ttl(federation: AuxNetwork) -> None:
    federation.datasite(ALICE)
    sender = federation.sender([ALICE])
    results = check_client_resources(sender, {ALICE: {"cpus": 1}}, WAIT, ttl=120)
    assert results[ALICE][0]


@pytest.mark.parametrize(
    ("reqs", "error", "why"),
    [
        ({"mallory@res.test": {}}, AuxError, "not a datasite of this run"),
        ({ALICE: {"cpus": "lots"}}, ResourceError, f"the resource requirement for {ALICE}"),
        ({ALICE: {"ram": 1}}, ResourceError, "unknown key"),
        ([ALICE], ResourceError, "resource_reqs must map datasites"),
    ],
)
def test_check_fails_before_sending(
    federation: AuxNetwork, reqs: Any, error: type[Exception], why: str
) -> None:
    calls: list[AuxRequest] = []
    transport = federation.transport(ALICE)
    registry = AuxHandlerRegistry()
    registry.register(RESOURCES_CHECK_TOPIC, lambda request: calls.append(request))  # type: ignore[func-returns-value]
    serve_aux(transport, APP, registry, senders=[SERVER])
    sender = federation.sender([ALICE])
    with pytest.raises(error, match=why):
        check_client_resources(sender, reqs, WAIT)
    thread = threading.Thread(target=transport.run, daemon=True)
    thread.start()
    federation.threads.append(thread)
    check_client_resources(sender, {ALICE: {"cpus": 1}}, WAIT)
    assert len(calls) == 1  # only the probe arrived


def test_check_ttl_is_validated_before_sending(federation: AuxNetwork) -> None:
    with pytest.raises(ResourceError, match="the reservation ttl"):
        check_client_resources(federation.sender([ALICE]), {ALICE: {}}, WAIT, ttl=0)
    with pytest.raises(AuxError, match="positive number of seconds"):
        check_client_resources(federation.sender([ALICE]), {ALICE: {}}, 0)


def test_malformed_answers_are_failures(federation: AuxNetwork) -> None:
    answers = iter(
        [
            RecordDict(),
            RecordDict({"result": ConfigRecord({"ok": True, "token": ""})}),
            RecordDict({"result": ConfigRecord({"ok": False, "reason": ""})}),
        ]
    )
    transport = federation.transport(ALICE)
    registry = AuxHandlerRegistry()
    registry.register(RESOURCES_CHECK_TOPIC, lambda request: next(answers))
    serve_aux(transport, APP, registry, senders=[SERVER])
    thread = threading.Thread(target=transport.run, daemon=True)
    thread.start()
    federation.threads.append(thread)
    sender = federation.sender([ALICE])
    reasons = [check_client_resources(sender, {ALICE: {}}, WAIT)[ALICE] for _ in range(3)]
    assert reasons == [
        (False, f"{ALICE} sent a malformed resource check answer"),
        (False, f"{ALICE} reserved resources but sent no token"),
        (False, "not enough resources"),
    ]


def test_cancel_releases_only_successful_reservations(federation: AuxNetwork) -> None:
    federation.datasite(ALICE)
    federation.datasite(BOB, ResourceOffer(1, 1, 0, 1, frozenset()))
    sender = federation.sender([ALICE, BOB])
    reqs = {ALICE: {"cpus": 4}, BOB: {"cpus": 4}}
    results = check_client_resources(sender, reqs, WAIT)
    assert federation.books[ALICE].held()["cpus"] == 4
    released = cancel_client_resources(sender, results, reqs, WAIT)
    assert released == {ALICE: True}
    assert federation.books[ALICE].held()["cpus"] == 0
    assert cancel_client_resources(sender, results, reqs, WAIT) == {ALICE: False}
    assert cancel_client_resources(sender, results, {BOB: {}}, WAIT) == {}


def test_cancel_of_a_silent_datasite_is_not_released(federation: AuxNetwork) -> None:
    federation.transport(CAROL)
    released = cancel_client_resources(
        federation.sender([CAROL]), {CAROL: (True, "t")}, {CAROL: {}}, 0.3
    )
    assert released == {CAROL: False}


@pytest.mark.parametrize("result", [(True,), ("yes", "t"), (True, 3), [True, "t"], None])
def test_cancel_checks_the_results_it_is_given(federation: AuxNetwork, result: object) -> None:
    with pytest.raises(ResourceError, match=f"the check result for '{ALICE}'"):
        cancel_client_resources(
            federation.sender([ALICE]),
            {ALICE: result},  # type: ignore[dict-item]
            {ALICE: {}},
            WAIT,
        )


def test_the_default_ttl_is_five_minutes() -> None:
    assert DEFAULT_RESERVATION_TTL == 300.0
    assert ReservationBook(OFFER).ttl == DEFAULT_RESERVATION_TTL
