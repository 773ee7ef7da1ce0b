"""A two-tier cache for asyncio: an in-process tier in front of a shared remote tier."""
