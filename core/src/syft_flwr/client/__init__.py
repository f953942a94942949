"""A datasite's side: the runner serving a ``ClientApp``, its services, workspace and report.

:mod:`syft_flwr.client.app` is ``syftbox_flwr_client``; :mod:`syft_flwr.client.runner` the loop
that admits requests through the gate and answers them. Nothing here imports
:mod:`syft_flwr.server`.
"""
