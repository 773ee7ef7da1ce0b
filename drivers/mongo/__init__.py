"""MongoDB for asyncio through PyMongo's native ``AsyncMongoClient``.

    client.py   MongoClient and Collection: errors converted and calls observed at the boundary
    config.py   MongoConfig: every setting and its default
"""

from drivers.mongo.client import Collection, MongoClient
from drivers.mongo.config import MongoConfig

__all__ = ["Collection", "MongoClient", "MongoConfig"]
