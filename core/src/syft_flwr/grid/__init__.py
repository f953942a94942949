"""Routing: Flower messages to datasites and back (``SyftGrid``), and the gate requests pass.

The grid is the sending half (a Flower ``Grid`` over a transport); the gate
(:mod:`syft_flwr.grid.gate`) is the receiving half every serving endpoint puts in front of its
handler, on a datasite (the client runner) as on the server (its aux endpoint). Nothing here
knows about rounds, workspaces or the server engine: what the engine needs to observe or
journal comes in through one port, :class:`~syft_flwr.grid.port.GridPort`.
"""
