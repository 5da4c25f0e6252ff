"""The Matrix protocol, pure and without I/O."""
