"""``python -m syft_flwr`` is the ``syft-flwr`` command."""

from syft_flwr.cli import main

raise SystemExit(main())
