"""Test helpers for syft-flwr and transport plugins."""
