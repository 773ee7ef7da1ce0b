"""Redis for asyncio: a pipelined connection for short commands, a pool for blocking ones, one pub/sub subscription.

    client.py   RedisClient: the commands, retries by command, the call boundary   (API)
    pipe.py     PipelinedRedis / PipeConnection: many commands in flight on one socket (connection)
    pubsub.py   Subscriber / SubscriberConnection: one subscription shared by listeners (connection)
    resp.py     RESP request encoding, sans-I/O                                       (protocol)
    config.py   RedisConfig: every setting and its default
"""

from drivers.redis.client import RedisClient
from drivers.redis.config import RedisConfig, SubscriptionConfig
from drivers.redis.pipe import PipeConnection, PipelinedRedis
from drivers.redis.pubsub import Listener, Subscriber

__all__ = ["Listener", "PipeConnection", "PipelinedRedis", "RedisClient", "RedisConfig", "Subscriber",
           "SubscriptionConfig"]
