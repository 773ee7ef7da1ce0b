"""Redis for asyncio: a pipelined connection for short commands, a pool for blocking ones, one pub/sub subscription;
Redis Cluster on one pipelined connection per node.

    client.py   RedisClient: the commands, retries by command, the call boundary   (API)
    cluster.py  RedisClusterClient: routing by slot, redirects, retries, the boundary (API)
    topology.py Topology: a connection per node, the slot table, its background refresh (routing)
    pipe.py     PipelinedRedis / PipeConnection: many commands in flight on one socket (connection)
    pubsub.py   Subscriber / SubscriberConnection: one subscription shared by listeners (connection)
    resp.py     RESP request encoding, sans-I/O                                       (protocol)
    slots.py    key -> hash slot, CLUSTER SHARDS/SLOTS -> slot table, MOVED/ASK, sans-I/O (protocol)
    config.py   RedisConfig, RedisClusterConfig: every setting and its default
"""

from drivers.redis.client import RedisClient
from drivers.redis.cluster import RedisClusterClient
from drivers.redis.config import RedisClusterConfig, RedisConfig, SubscriptionConfig
from drivers.redis.pipe import PipeConnection, PipelinedRedis
from drivers.redis.pubsub import Listener, Subscriber

__all__ = ["Listener", "PipeConnection", "PipelinedRedis", "RedisClient", "RedisClusterClient", "RedisClusterConfig",
           "RedisConfig", "Subscriber", "SubscriptionConfig"]
