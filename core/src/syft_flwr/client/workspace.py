"""The datasite's own workspace: what its owner needs to see and decide, outside the synced folder.

Layout (``<root>`` is the project's workspace root, as for the server's runs: see
:func:`~syft_flwr.workspace_location.workspace_root`; without a project,
``$XDG_STATE_HOME/syft-flwr`` or ``~/.local/state/syft-flwr``)::

    <root>/datasites/<email>/
        audit.jsonl                   every request accepted, held or refused (syft_flwr.audit)
        audit.jsonl.1 ...             rotated parts of it
        approvals/<run_id>.pending.json   a run waiting for the owner (approve = "manual")
        approvals/<run_id>.decision.json  the owner's decision (syft-flwr approve / deny)

Nothing here is synced: it is the owner's record, not something peers may read or write.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from syft_flwr.addresses import check_datasite
from syft_flwr.config import ProjectConfig
from syft_flwr.errors import ConfigError, InvalidAddressError
from syft_flwr.node_ids import normalise_email
from syft_flwr.workspace_location import workspace_root

__all__ = ["AUDIT_FILE", "DatasiteWorkspace", "default_state_root"]

AUDIT_FILE = "audit.jsonl"
_APPROVALS = "approvals"
_DATASITES = "datasites"


def default_state_root(environ: Mapping[str, str] | None = None) -> Path:
    """Where a datasite without a project keeps its workspace (XDG state directory)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME", "").strip() or "~/.local/state"
    return Path(base).expanduser() / "syft-flwr"


class DatasiteWorkspace:
    """The folder of one datasite's own records.

    :param path: ``<root>/datasites/<email>``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def locate(
        cls,
        config: ProjectConfig,
        project_dir: Path | None,
        email: str,
        environ: Mapping[str, str] | None = None,
    ) -> DatasiteWorkspace:
        """The workspace of ``email`` for this project.

        :raises ConfigError: ``email`` is not a safe email (it becomes a folder name).
        """
        try:
            folder = normalise_email(check_datasite(email.strip()))
        except InvalidAddressError as exc:
            raise ConfigError(f"identity {email!r} cannot name a workspace: {exc}") from exc
        root = workspace_root(config, project_dir, environ) or default_state_root(environ)
        return cls(root / _DATASITES / folder)

    @property
    def audit_path(self) -> Path:
        """The current audit trail file."""
        return self.path / AUDIT_FILE

    @property
    def approvals_dir(self) -> Path:
        """Where pending runs and the owner's decisions live."""
        return self.path / _APPROVALS
