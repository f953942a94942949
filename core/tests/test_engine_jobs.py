"""Job policy parsing, job start over real transports, and the datasite's built-in topics."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flwr.app import ConfigRecord, RecordDict

from core.tests.aux_network import AuxNetwork
from syft_flwr.client.services import NO_JOB, PING_TOPIC, ClientServices, parse_ping_reply
from syft_flwr.config import ProjectConfig, load_project_config
from syft_flwr.errors import AuxError, ConfigError, EngineError, JobStartError, ResourceError
from syft_flwr.node_ids import node_id_for
from syft_flwr.services.auxiliary import (
    AuxHandlerRegistry,
    AuxReply,
    AuxRequest,
    AuxSender,
    AuxStatus,
    serve_aux,
)
from syft_flwr.services.jobs import (
    DEFAULT_START_TIMEOUT,
    JOB_START_TOPIC,
    JobPolicy,
    JobStartReport,
    build_start_reply,
    build_start_request,
    parse_start_request,
    start_client_job,
)
from syft_flwr.services.resources import (
    ReservationBook,
    ResourceOffer,
    ResourceRequirement,
    build_cancel_request,
    build_check_request,
    check_client_resources,
)

APP = "flwr/jobs-test"
SERVER = "server@jobs.test"
ALICE = "alice@jobs.test"
BOB = "bob@jobs.test"
CAROL = "carol@jobs.test"
DATASITES = [ALICE, BOB, CAROL]
WAIT = 20.0
SOURCE = Path("/p/pyproject.toml")
OFFER = ResourceOffer(cpus=4, memory_gb=8, gpus=0, disk_gb=10, datasets=frozenset({"mnist"}))


# -- the policy --------------------------------------------------------------------------------


def test_policy_reads_every_key() -> None:
    table = {
        "min_clients": 2,
        "required": [ALICE],
        "resources": {"cpus": 2, "datasets": ["mnist"]},
        "reservation_ttl": 120,
        "start_timeout": 15,
    }
    policy = JobPolicy.from_table(table, DATASITES, SOURCE)
    assert policy == JobPolicy(
        min_clients=2,
        required=frozenset({ALICE}),
        resources=ResourceRequirement(cpus=2, datasets=frozenset({"mnist"})),
        reservation_ttl=120.0,
        start_timeout=15.0,
    )


def test_policy_defaults() -> None:
    policy = JobPolicy.from_table({}, DATASITES)
    assert policy == JobPolicy()
    assert policy.start_timeout == DEFAULT_START_TIMEOUT and policy.min_clients is None


@pytest.mark.parametrize(
    ("table", "error", "why"),
    [
        ({"min_client": 2}, ConfigError, r"unknown key\(s\) min_client in \[tool.syft_flwr.job\]"),
        ({"min_clients": 0}, ConfigError, "min_clients in .* must be a positive integer"),
        ({"min_clients": True}, ConfigError, "min_clients in .* must be a positive integer"),
        ({"min_clients": 1.5}, ConfigError, "min_clients in .* must be a positive integer"),
        ({"min_clients": "2"}, ConfigError, "min_clients in .* must be a positive integer"),
        ({"min_clients": 4}, ConfigError, "min_clients = 4 in .* exceeds the 3 datasite"),
        ({"required": ALICE}, ConfigError, "required in .* must be a list of datasite emails"),
        ({"required": [ALICE, 3]}, ConfigError, "required in .* must be a list"),
        ({"required": ["x@y.z"]}, ConfigError, "required in .* names x@y.z, not among"),
        ({"resources": {"cpus": -1}}, ResourceError, r"cpus in \[tool.syft_flwr.job.resources\]"),
        ({"resources": {"tpus": 1}}, ResourceError, r"unknown key\(s\) tpus in \[tool.syft"),
        ({"resources": 3}, ResourceError, r"\[tool.syft_flwr.job.resources\] of .* must be a"),
        ({"reservation_ttl": 0}, ResourceError, r"reservation_ttl in \[tool.syft_flwr.job\]"),
        ({"reservation_ttl": "1h"}, ResourceError, "reservation_ttl in"),
        ({"start_timeout": 0}, ConfigError, "start_timeout in .* must be a positive number"),
        ({"start_timeout": math.inf}, ConfigError, "start_timeout in .* must be a positive"),
        ({"start_timeout": False}, ConfigError, "start_timeout in .* must be a positive"),
    ],
)
def test_policy_errors_name_the_key_and_the_file(
    table: dict[str, Any], error: type[Exception], why: str
) -> None:
    with pytest.raises(error, match=why) as raised:
        JobPolicy.from_table(table, DATASITES, SOURCE)
    assert str(SOURCE) in str(raised.value)


def write_project(folder: Path, body: str) -> Path:
    (folder / "pyproject.toml").write_text(body)
    return folder


def test_policy_from_a_project(tmp_path: Path) -> None:
    project = write_project(
        tmp_path,
        f"""
[tool.syft_flwr]
datasites = ["{ALICE}", "{BOB}"]

[tool.syft_flwr.job]
min_clients = 2

[tool.syft_flwr.job.resources]
cpus = 1
""",
    )
    config = load_project_config(project)
    policy = JobPolicy.from_config(config)
    assert policy is not None and policy.min_clients == 2
    assert policy.resources == ResourceRequirement(cpus=1)
    with pytest.raises(ConfigError, match=f"of {tmp_path}.*exceeds the 1 datasite"):
        JobPolicy.from_config(config, datasites=[ALICE])


def test_no_job_table_means_no_policy() -> None:
    assert JobPolicy.from_config(ProjectConfig()) is None


def test_shortfall_names_min_clients_and_required() -> None:
    policy = JobPolicy(min_clients=2, required=frozenset({ALICE, BOB}))
    assert policy.shortfall([ALICE, BOB]) is None
    assert policy.shortfall([ALICE]) == (
        f"1 datasite(s) started, min_clients is 2; required datasite(s) did not start: {BOB}"
    )
    assert JobPolicy().shortfall([]) == "0 datasite(s) started, min_clients is 1"


# -- wire records ------------------------------------------------------------------------------


def test_start_request_round_trips_and_malformed_ones_are_named() -> None:
    assert parse_start_request(build_start_request(2**62, "tok")) == (2**62, "tok")
    with pytest.raises(ResourceError, match="needs a run id"):
        parse_start_request(RecordDict())
    with pytest.raises(ResourceError, match="needs a run id"):
        parse_start_request(RecordDict({"job": ConfigRecord({"run_id": True, "token": "t"})}))
    with pytest.raises(ResourceError, match="needs a reservation token"):
        parse_start_request(RecordDict({"job": ConfigRecord({"run_id": 1})}))


# -- the datasite's built-in topics ------------------------------------------------------------


def aux(content: RecordDict, sender: str = SERVER, topic: str = "t") -> AuxRequest:
    return AuxRequest(topic, sender, content, 1)


def services(started: list[tuple[int, str]] | None = None) -> ClientServices:
    book = ReservationBook(OFFER)
    on_start = None if started is None else (lambda run, who: started.append((run, who)))
    return ClientServices(ALICE, book, on_start, clock=lambda: 123.0)


def test_builtins_register_once() -> None:
    registry = AuxHandlerRegistry()
    built = services()
    built.register(registry)
    assert PING_TOPIC in registry.topics and JOB_START_TOPIC in registry.topics
    with pytest.raises(AuxError, match="already has a handler"):
        built.register(registry)


def test_ping_says_who_when_which_job_and_what_it_offers() -> None:
    built = services()
    info = parse_ping_reply(AuxReply(ALICE, AuxStatus.OK, built.ping(aux(RecordDict()))))
    assert info is not None
    assert (info.datasite, info.node_id, info.time) == (ALICE, node_id_for(ALICE), 123.0)
    assert info.job_run_id is None and info.offer == OFFER


def test_malformed_or_failed_pings_carry_no_info() -> None:
    assert parse_ping_reply(AuxReply(ALICE, AuxStatus.TIMEOUT)) is None
    assert parse_ping_reply(AuxReply(ALICE, AuxStatus.OK, RecordDict())) is None
    bad = RecordDict({"ping": ConfigRecord({"datasite": ALICE})})
    assert parse_ping_reply(AuxReply(ALICE, AuxStatus.OK, bad)) is None


def test_check_and_cancel_go_through_the_book() -> None:
    built = services()
    answer = built.check(aux(build_check_request(ResourceRequirement(cpus=3), 60.0)))
    result = answer["result"]
    assert result["ok"] is True and result["reason"] == ""
    assert built.book.held()["cpus"] == 3
    refused = built.check(aux(build_check_request(ResourceRequirement(cpus=3), None)))
    assert refused["result"]["ok"] is False and "1 free of 4" in str(refused["result"]["reason"])
    token = str(result["token"])
    assert (
        built.cancel(aux(build_cancel_request(token), sender=BOB))["result"]["cancelled"] is False
    )
    assert built.cancel(aux(build_cancel_request(token)))["result"]["cancelled"] is True
    assert built.book.held()["cpus"] == 0


def test_job_start_binds_the_datasite_to_one_run() -> None:
    started: list[tuple[int, str]] = []
    built = services(started)
    _, first = built.book.reserve(ResourceRequirement(), SERVER)
    _, second = built.book.reserve(ResourceRequirement(), SERVER)
    _, third = built.book.reserve(ResourceRequirement(), SERVER)
    bad = built.start_job(aux(build_start_request(5, "nope")))
    assert bad["result"]["started"] is False and "is unknown" in str(bad["result"]["reason"])
    assert built.job_run_id is None
    assert built.start_job(aux(build_start_request(5, first)))["result"]["started"] is True
    assert built.job_run_id == 5 and started == [(5, SERVER)]
    other = built.start_job(aux(build_start_request(6, second)))
    assert other["result"]["started"] is False
    assert "already serves the job of run 5" in str(other["result"]["reason"])
    # a server that resumes run 5 starts its job again: accepted, whatever the token, and the
    # datasite is not bound a second time
    assert built.start_job(aux(build_start_request(5, third)))["result"]["started"] is True
    assert built.start_job(aux(build_start_request(5, first)))["result"]["started"] is True
    assert started == [(5, SERVER)]
    stranger = built.start_job(aux(build_start_request(5, second), sender=BOB))
    assert stranger["result"]["started"] is False, "another server took over the job"
    info = parse_ping_reply(AuxReply(ALICE, AuxStatus.OK, built.ping(aux(RecordDict()))))
    assert info is not None and info.job_run_id == 5 and NO_JOB < 0


def test_job_start_checks_the_holder() -> None:
    built = services()
    _, token = built.book.reserve(ResourceRequirement(), SERVER)
    answer = built.start_job(aux(build_start_request(5, token), sender=BOB))
    assert "issued to" in str(answer["result"]["reason"])


# -- job start over real transports ------------------------------------------------------------


@pytest.fixture
def federation() -> Iterator[AuxNetwork]:
    built = AuxNetwork(APP, SERVER, DATASITES, OFFER, run_id=77)
    yield built
    built.close()


def reserve_all(sender: AuxSender, datasites: list[str]) -> dict[str, str]:
    results = check_client_resources(sender, {d: {"cpus": 1} for d in datasites}, WAIT)
    return {d: token for d, (ok, token) in results.items() if ok}


def test_every_reserved_datasite_starts(federation: AuxNetwork) -> None:
    for datasite in DATASITES:
        federation.datasite(datasite)
    sender = federation.sender()
    tokens = reserve_all(sender, DATASITES)
    report = start_client_job(sender, 77, tokens, JobPolicy(min_clients=3), WAIT)
    assert report == JobStartReport(77, tuple(DATASITES), {})
    assert {s.job_run_id for s in federation.services.values()} == {77}


def test_datasites_that_do_not_start_are_reported(
    federation: AuxNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    federation.datasite(ALICE)
    federation.datasite(BOB)
    federation.transport(CAROL)  # silent
    sender = federation.sender()
    tokens = reserve_all(sender, [ALICE])
    tokens[BOB] = "forged"
    tokens[CAROL] = "whatever"
    started = time.monotonic()
    report = start_client_job(sender, 77, tokens, JobPolicy(min_clients=1), 0.5)
    assert time.monotonic() - started < WAIT
    assert report.started == (ALICE,)
    assert "is unknown" in report.failed[BOB]
    assert report.failed[CAROL] == "no answer within 0.5 s"
    assert "starts without" in caplog.text


def test_too_few_starts_fail_the_job_listing_everyone(federation: AuxNetwork) -> None:
    federation.datasite(ALICE)
    federation.datasite(BOB)
    sender = federation.sender()
    tokens = reserve_all(sender, [ALICE])
    tokens[BOB] = "forged"
    with pytest.raises(JobStartError) as raised:
        start_client_job(sender, 77, tokens, JobPolicy(min_clients=2), WAIT)
    text = str(raised.value)
    assert "1 datasite(s) started, min_clients is 2" in text
    assert f"{BOB}: reservation token is unknown" in text


def test_a_required_datasite_must_start(federation: AuxNetwork) -> None:
    federation.datasite(ALICE)
    federation.datasite(BOB)
    sender = federation.sender()
    tokens = reserve_all(sender, [ALICE])
    policy = JobPolicy(required=frozenset({BOB}))
    with pytest.raises(JobStartError, match=f"required datasite.*{BOB}") as raised:
        start_client_job(sender, 77, tokens, policy, WAIT)
    assert f"{BOB}: no reservation token" in str(raised.value)


def test_no_policy_needs_one_datasite(federation: AuxNetwork) -> None:
    with pytest.raises(JobStartError, match="0 datasite"):
        start_client_job(federation.sender(), 77, {}, None, WAIT)


def test_a_datasite_without_job_support_does_not_start(federation: AuxNetwork) -> None:
    transport = federation.transport(ALICE)
    serve_aux(transport, APP, AuxHandlerRegistry(), senders=[SERVER])
    thread = threading.Thread(target=transport.run, daemon=True)
    thread.start()
    federation.threads.append(thread)
    federation.datasite(BOB)
    sender = federation.sender()
    tokens = {ALICE: "t", **reserve_all(sender, [BOB])}
    report = start_client_job(sender, 77, tokens, None, WAIT)
    assert report.started == (BOB,)
    assert report.failed[ALICE].startswith("could not start (unknown-topic)")


def test_malformed_start_answers_are_failures(federation: AuxNetwork) -> None:
    answers = iter([RecordDict(), build_start_reply(False)])
    transport = federation.transport(ALICE)
    registry = AuxHandlerRegistry()
    registry.register(JOB_START_TOPIC, lambda request: next(answers))
    serve_aux(transport, APP, registry, senders=[SERVER])
    thread = threading.Thread(target=transport.run, daemon=True)
    thread.start()
    federation.threads.append(thread)
    federation.datasite(BOB)
    sender = federation.sender()
    for expected in ("sent a malformed job start answer", "refused to start"):
        tokens = {ALICE: "t", **reserve_all(sender, [BOB])}
        report = start_client_job(sender, 77, tokens, None, WAIT)
        assert report.failed[ALICE] == expected


@pytest.mark.parametrize("run_id", [-1, True, "7", 1.0])
def test_run_id_must_be_a_non_negative_integer(federation: AuxNetwork, run_id: object) -> None:
    with pytest.raises(EngineError, match="run_id must be a non-negative integer"):
        start_client_job(federation.sender(), run_id, {}, None, WAIT)  # type: ignore[arg-type]


@pytest.mark.parametrize("token", ["", None, 3])
def test_tokens_must_be_strings(federation: AuxNetwork, token: object) -> None:
    with pytest.raises(ResourceError, match=f"the reservation token for '{ALICE}'"):
        start_client_job(federation.sender(), 77, {ALICE: token}, None, WAIT)  # type: ignore[dict-item]


def test_unknown_datasites_fail_before_sending(federation: AuxNetwork) -> None:
    with pytest.raises(AuxError, match="not a datasite of this run"):
        start_client_job(federation.sender(), 77, {"mallory@jobs.test": "t"}, None, WAIT)
    with pytest.raises(AuxError, match="positive number of seconds"):
        start_client_job(federation.sender(), 77, {ALICE: "t"}, None, 0)
