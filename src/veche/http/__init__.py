"""Thin HTTP layer: one module per client-server API module of the spec."""
