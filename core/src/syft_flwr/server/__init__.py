"""The aggregator's side: the server engine, its workspace, journal, resume and liveness.

:mod:`syft_flwr.server.app` is ``syftbox_flwr_server``; :mod:`syft_flwr.server.engine` the
:class:`~syft_flwr.server.engine.ServerEngine` it drives a run with. Nothing here imports
:mod:`syft_flwr.client`.
"""
