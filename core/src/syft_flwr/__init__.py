"""syft-flwr: Flower federated learning over pluggable transports.

The server API lives in :mod:`syft_flwr.fl_orchestrator`; transport plugins implement the
hooks in :mod:`syft_flwr.hookspecs` with :data:`hookimpl` and subclass
:class:`syft_flwr.transport.Transport`. Importing this package registers nothing.
"""

from importlib.metadata import PackageNotFoundError, version

from syft_flwr.errors import SyftFlwrError
from syft_flwr.hookspecs import hookimpl

try:
    __version__ = version("syft-flwr-core")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = ["SyftFlwrError", "__version__", "hookimpl"]
