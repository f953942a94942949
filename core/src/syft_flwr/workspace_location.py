"""Where a project's workspaces live: one answer for the server's runs and a datasite's records.

The server keeps its runs there (:mod:`syft_flwr.server.workspace`), a datasite its approvals and
audit trail (:mod:`syft_flwr.client.workspace`); both ask this module so that one setting moves
both, and neither role imports the other.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from syft_flwr.config import ProjectConfig

__all__ = ["DEFAULT_DIRNAME", "ENV_VAR", "workspace_root"]

DEFAULT_DIRNAME = ".syft_flwr"
ENV_VAR = "SYFT_FLWR_WORKSPACE"


def workspace_root(
    config: ProjectConfig, project_dir: Path | None, environ: Mapping[str, str] | None = None
) -> Path | None:
    """Where runs of this project keep their workspaces, ``None`` when there is nowhere.

    ``SYFT_FLWR_WORKSPACE`` wins, then ``[tool.syft_flwr] workspace`` (relative paths are
    taken from the project directory), then ``<project_dir>/.syft_flwr``.
    """
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR, "").strip():
        return Path(env[ENV_VAR].strip()).expanduser()
    if config.workspace:
        path = Path(config.workspace).expanduser()
        return path if path.is_absolute() or project_dir is None else Path(project_dir) / path
    return None if project_dir is None else Path(project_dir) / DEFAULT_DIRNAME
