"""Clients: the internal apps that share the tracker, their keys' owner and their limits."""
