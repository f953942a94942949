"""A datasite that is not in the run and tries to drive someone else's (a test double of a peer).

The threat it plays: every SyftBox user can write requests into its own sender folder of every
other datasite, publish its own keys and seal to anyone. :class:`Attacker` does exactly that
through a real transport (and, with a channel, real keys of its own), using the same
:class:`~syft_flwr.grid.syft_grid.SyftGrid` a server uses, so every attack is a
well-formed request from a real sender, never a shortcut into the victim's process. The
conformance kit's authorization tests and the end-to-end attack tests use it; each method
returns what came back, so a test can assert the refusal.
"""

from __future__ import annotations

import time

from flwr.app import ConfigRecord, Message, Metadata, RecordDict

from syft_flwr.crypto.channel import SecureChannel
from syft_flwr.grid.syft_grid import SERVER_NODE_ID, SyftGrid
from syft_flwr.message_factory import message_with_metadata
from syft_flwr.node_ids import node_id_for
from syft_flwr.services.auxiliary import AUX_ENDPOINT, AuxReply, AuxSender
from syft_flwr.services.jobs import JOB_START_TOPIC, build_start_request
from syft_flwr.services.resources import (
    RESOURCES_CHECK_TOPIC,
    ResourceRequirement,
    build_check_request,
)
from syft_flwr.stop_signal import STOP_GROUP_ID, SYSTEM_MESSAGE_TYPE, build_stop_content
from syft_flwr.transport import Transport

__all__ = ["ATTACK_MARKER", "Attacker"]

ATTACK_MARKER = "syft_flwr.testing.attack"
"""Config record key every attacking Flower message carries, so a test can prove that no
``ClientApp`` ever saw one."""


class Attacker:
    """Sends a victim datasite what only its aggregator should send.

    :param transport: the attacker's own transport (its own identity).
    :param app: the application path the victim serves, e.g. ``"flwr/demo"``.
    :param channel: seal with the attacker's own keys (the victim then sees a validly sealed
        request from a stranger); ``None`` sends plaintext.
    :param timeout: how long each attack waits for the victim's answer.
    """

    def __init__(
        self,
        transport: Transport,
        app: str,
        *,
        channel: SecureChannel | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.transport = transport
        self.app = app
        self.channel = channel
        self.timeout = timeout

    @property
    def identity(self) -> str:
        """The attacker's email."""
        return self.transport.identity

    def _grid(self, victim: str, run_id: int, endpoint: str = "messages") -> SyftGrid:
        grid = SyftGrid(
            self.app,
            [victim],
            self.transport,
            endpoint=endpoint,
            channel=self.channel,
            msg_timeout=self.timeout,
            reports_rounds=False,
        )
        grid.set_run(run_id)
        return grid

    def flower_message(
        self, victim: str, run_id: int, message_type: str = "train", ttl: float | None = None
    ) -> Message:
        """What the attacker sends: a message of ``message_type`` carrying :data:`ATTACK_MARKER`."""
        metadata = Metadata(
            run_id=run_id,
            message_id="",
            src_node_id=SERVER_NODE_ID,
            dst_node_id=node_id_for(victim),
            reply_to_message_id="",
            group_id="1",
            created_at=time.time(),
            ttl=self.timeout if ttl is None else ttl,
            message_type=message_type,
        )
        content = RecordDict({ATTACK_MARKER: ConfigRecord({"from": self.identity})})
        return message_with_metadata(metadata, content=content)

    def send(self, victim: str, run_id: int, message_type: str = "train") -> Message:
        """Ask ``victim`` to do ``message_type`` work in run ``run_id``; its reply (or error)."""
        grid = self._grid(victim, run_id)
        (reply,) = grid.send_and_receive(
            [self.flower_message(victim, run_id, message_type)], timeout=self.timeout
        )
        return reply

    def push(self, victim: str, run_id: int, message_type: str = "train") -> None:
        """Send a message without waiting for any answer (it stays queued at the victim)."""
        grid = self._grid(victim, run_id)
        grid.discard(grid.push_messages([self.flower_message(victim, run_id, message_type)]))

    def stop(self, victim: str, run_id: int, reason: str = "stopped by an attacker") -> None:
        """Send ``victim`` a stop signal for run ``run_id`` (no answer is ever awaited)."""
        grid = self._grid(victim, run_id)
        metadata = Metadata(
            run_id=run_id,
            message_id="",
            src_node_id=SERVER_NODE_ID,
            dst_node_id=node_id_for(victim),
            reply_to_message_id="",
            group_id=STOP_GROUP_ID,
            created_at=time.time(),
            ttl=self.timeout,
            message_type=SYSTEM_MESSAGE_TYPE,
        )
        stop = message_with_metadata(metadata, content=build_stop_content(reason))
        grid.discard(grid.push_messages([stop]))

    def check_and_start(self, victim: str, run_id: int) -> tuple[AuxReply, AuxReply]:
        """Reserve ``victim``'s resources and start a job of run ``run_id`` on it."""
        sender = AuxSender(self._grid(victim, run_id, AUX_ENDPOINT))
        check = sender.send_aux_request(
            [victim],
            RESOURCES_CHECK_TOPIC,
            build_check_request(ResourceRequirement(), None),
            self.timeout,
        )[victim]
        start = sender.send_aux_request(
            [victim], JOB_START_TOPIC, build_start_request(run_id, "forged-token"), self.timeout
        )[victim]
        return check, start
