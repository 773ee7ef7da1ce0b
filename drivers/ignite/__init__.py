"""A hand-written asyncio thin client for Apache Ignite 2.x (binary client protocol 1.7)."""

from drivers.ignite.client import Client

__all__ = ["Client"]
