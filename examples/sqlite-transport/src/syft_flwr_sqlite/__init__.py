"""syft-flwr-sqlite: a syft-flwr transport over a SQLite database shared by local processes.

Select it with ``[tool.syft_flwr] transport = "sqlite"`` and point every participant at
the same file with ``[tool.syft_flwr.sqlite] database = "..."``. It is the worked example
of the syft-flwr plugin guide: a third-party plugin built on the public core API only.
"""

from __future__ import annotations

from syft_flwr_sqlite.options import SqliteOptions
from syft_flwr_sqlite.transport import SqliteTransport

__all__ = ["SqliteOptions", "SqliteTransport"]
