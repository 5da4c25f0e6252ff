"""Outbound federation: finding other servers and sending them signed requests."""
