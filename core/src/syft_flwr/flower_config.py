"""The run config and node config a Flower app reads, filled the way Flower fills them.

Apps made from Flower's templates read ``context.run_config["num-server-rounds"]`` on the
server and ``context.node_config["partition-id"]`` on a client, so a project must run here with
the values it would get from Flower:

- **run config**: the project's ``[tool.flwr.app.config]``, with ``--run-config "k=v ..."``
  overrides as ``flwr run`` takes them (a key the project does not declare is an error there
  too, so a typo cannot pass unnoticed);
- **node config** of a datasite, later sources winning: ``partition-id`` = its position in
  ``[tool.syft_flwr] datasites`` and ``num-partitions`` = their number (what Flower's
  simulation engine gives each node), its ``[tool.syft_flwr.node_config."<email>"]`` table,
  and ``--node-config "k=v ..."`` as ``flower-supernode`` takes it.

Values are parsed by Flower's own parser, so quoting and types match ``flwr run``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from flwr.common.config import parse_config_args

from syft_flwr.config import ProjectConfig
from syft_flwr.errors import ConfigError
from syft_flwr.node_ids import normalise_email

__all__ = ["node_config", "parse_overrides", "run_config"]

# Flower's own pattern for one ``key=value`` pair (``flwr.common.config.parse_config_args``).
_PAIR = re.compile(r"(\S+?)=(\'[^\']*\'|\"[^\"]*\"|\S+)")


def parse_overrides(lines: Sequence[str], option: str) -> dict[str, Any]:
    """``key=value`` pairs (or one ``.toml`` file) given to ``option``, as Flower reads them.

    :raises ConfigError: a part is no ``key=value`` pair, or a value is no TOML value.
    """
    for line in lines:
        if line.endswith(".toml"):
            continue
        leftover = _PAIR.sub("", line).strip()
        if leftover:
            raise ConfigError(
                f"{option} {line!r}: {leftover.split()[0]!r} is not a key=value pair "
                "(write e.g. 'num-server-rounds=5 lr=0.1 name=\"x\"')"
            )
    try:
        return parse_config_args(list(lines)) if lines else {}
    except Exception as exc:  # Flower raises click's or ValueError; both mean bad input
        message = getattr(exc, "message", None) or str(exc)
        raise ConfigError(f"{option} {' '.join(lines)!r}: {message}") from None


def run_config(config: ProjectConfig, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The run config: ``[tool.flwr.app.config]`` with ``--run-config`` overrides.

    :raises ConfigError: an override names a key the project does not declare.
    """
    values = dict(config.flower_config)
    for key, value in parse_overrides(overrides, "--run-config").items():
        if key not in values:
            declared = ", ".join(sorted(values)) or "none"
            raise ConfigError(
                f"--run-config {key}: no such key in [tool.flwr.app.config] of "
                f"{config.source} (declared: {declared})"
            )
        values[key] = value
    return values


def node_config(
    config: ProjectConfig, identity: str, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """The node config of datasite ``identity`` (see the module docstring for the order)."""
    values: dict[str, Any] = {}
    listed = [normalise_email(datasite) for datasite in config.datasites]
    me = normalise_email(identity)
    if me in listed:
        values["partition-id"] = listed.index(me)
        values["num-partitions"] = len(listed)
    values.update(config.node_configs.get(me, {}))
    values.update(parse_overrides(overrides, "--node-config"))
    return values
