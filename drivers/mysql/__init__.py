"""MySQL/MariaDB for asyncio: asyncmy connections in a pool of our own, with deadlines.

    client.py   MySQLClient: queries, deadlines, discard on failure, the call boundary   (API)
    pool.py     Pool: O(1) acquire and release, FIFO hand-off to waiters               (connections)
    config.py   MySQLConfig: every setting and its default
"""

from drivers.mysql.client import MySQLClient
from drivers.mysql.config import MySQLConfig

__all__ = ["MySQLClient", "MySQLConfig"]
