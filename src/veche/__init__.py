"""Veche: a self-hosted Matrix homeserver."""

__version__ = "0.1.0"
