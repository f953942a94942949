"""Who may ask a datasite (or a server) for anything: the sender policy every gate enforces.

A datasite's whole promise is that its private data leaves only as the model updates its owner
agreed to, so it must know *who* is asking before any work is done. Every SyftBox user can write
requests into its own sender folder of every other datasite, so "the request arrived" proves
nothing; "the request arrived from the aggregator" does. A datasite therefore serves Flower
messages, aux requests, stop signals, resource checks and job starts only from the aggregators
it trusts:

- by default the project's ``[tool.syft_flwr] aggregator``;
- or the list its owner sets on their side, ``[tool.syft_flwr] trusted_aggregators`` (which
  then replaces the default, so an owner can also *narrow* trust to one of several servers).

A server accepts aux requests only from the datasites of its run. The sender a policy checks is
the one the transport established (the folder only that sender can write, an authenticated
account); with encryption on, the gate also requires the sealed envelope's authenticated sender
to be the same (:meth:`~syft_flwr.crypto.SecureChannel.open` refuses a mismatch), so both must
match. Emails are compared in their normalised form (:func:`~syft_flwr.node_ids.normalise_email`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from syft_flwr.addresses import check_datasite
from syft_flwr.config import ProjectConfig
from syft_flwr.errors import ConfigError, InvalidAddressError
from syft_flwr.node_ids import normalise_email

__all__ = ["SenderPolicy", "aggregator_policy"]


class SenderPolicy:
    """The set of senders a gate accepts requests from.

    :param trusted: the senders' emails (each must be a safe email).
    :param role: what they are to this side (``"aggregator"``, ``"datasite"``), for messages.
    :raises ConfigError: ``trusted`` is empty or holds an unsafe email.
    """

    def __init__(self, trusted: Iterable[str], *, role: str = "aggregator") -> None:
        trusted = list(trusted)
        emails: list[str] = []
        for email in trusted:
            try:
                emails.append(normalise_email(check_datasite(email.strip())))
            except InvalidAddressError as exc:
                raise ConfigError(f"trusted {role} {email!r} is not usable: {exc}") from exc
        if not emails:
            raise ConfigError(f"no trusted {role}: requests could never be accepted")
        self._emails = tuple(dict.fromkeys(email.strip() for email in trusted))
        self._trusted = frozenset(emails)
        self.role = role

    @property
    def emails(self) -> tuple[str, ...]:
        """The accepted senders as given (the spelling to address them with)."""
        return self._emails

    @property
    def trusted(self) -> frozenset[str]:
        """The accepted senders, normalised."""
        return self._trusted

    def allows(self, sender: str) -> bool:
        """Whether ``sender`` may ask."""
        return normalise_email(sender) in self._trusted

    def refusal(self, sender: str) -> str | None:
        """Why ``sender`` is refused, or ``None`` if it may ask."""
        if self.allows(sender):
            return None
        return f"{sender} is not a trusted {self.role}"

    def __repr__(self) -> str:
        return f"SenderPolicy({sorted(self._trusted)!r}, role={self.role!r})"


def aggregator_policy(config: ProjectConfig, explicit: Sequence[str] | None = None) -> SenderPolicy:
    """The aggregators a datasite serves: ``explicit``, else ``trusted_aggregators``, else
    ``aggregator``.

    :raises ConfigError: none of them names anyone (a datasite never serves just anybody).
    """
    if explicit is not None:
        chosen: Sequence[str] = explicit
    elif config.trusted_aggregators is not None:
        chosen = config.trusted_aggregators
    else:
        chosen = [config.aggregator] if config.aggregator else []
    if not chosen:
        where = config.source or "the project's pyproject.toml"
        raise ConfigError(
            f"this datasite trusts no aggregator: set aggregator (or trusted_aggregators) in "
            f"[tool.syft_flwr] of {where}, or pass trusted_aggregators=; a datasite never "
            "serves whoever writes to it"
        )
    return SenderPolicy(chosen, role="aggregator")
