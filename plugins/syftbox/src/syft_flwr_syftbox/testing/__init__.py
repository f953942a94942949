"""Test helpers for the syftbox transport: a real SyftBox network on this machine."""
