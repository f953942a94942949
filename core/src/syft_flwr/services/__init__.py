"""The services server and datasites speak to each other outside the Flower rounds.

FLARE's engine capabilities, as message schemas both sides agree on: the aux channel
(:mod:`~syft_flwr.services.auxiliary`), resource checks and reservations
(:mod:`~syft_flwr.services.resources`) and job start (:mod:`~syft_flwr.services.jobs`). They sit
on the grid and the gate and below both roles, so the server and the client import them and
never each other.
"""
