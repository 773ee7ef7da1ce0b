"""Numbers of the Ignite binary client protocol: op codes, statuses, features, versions.

Rules of this file:

* Only numbers the Java server defines live here (``ClientMessageParser``,
  ``ClientStatus``, ``ClientBitmaskFeature``, ``ClientFlag``); nothing here
  knows about sockets or values.
* A feature mask is ``bytes``: feature ``n`` is bit ``n % 8`` of byte ``n // 8``,
  exactly as ``ThinProtocolFeature.featuresAsBytes`` lays it out.
* ``CLIENT_FEATURES`` lists only what the client layer above honours.  A bit
  switched on here changes the bytes the server expects (feature 7 adds fields
  to every SQL request, feature 13 to the partitions request and reply), so a
  bit is added only together with the encoder/decoder that honours it.
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class ProtocolVersion(NamedTuple):
    """A thin-client protocol version; tuples order the way versions do."""

    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


V1_0_0 = ProtocolVersion(1, 0, 0)
V1_1_0 = ProtocolVersion(1, 1, 0)  # authentication
V1_2_0 = ProtocolVersion(1, 2, 0)  # query entity precision and scale
V1_3_0 = ProtocolVersion(1, 3, 0)  # op 1101
V1_4_0 = ProtocolVersion(1, 4, 0)  # flags response header, node id in handshake
V1_5_0 = ProtocolVersion(1, 5, 0)  # transactions
V1_6_0 = ProtocolVersion(1, 6, 0)  # expiry policy
V1_7_0 = ProtocolVersion(1, 7, 0)  # feature bitmask
LATEST_VERSION = V1_7_0
SUPPORTED_VERSIONS: frozenset[ProtocolVersion] = frozenset(
    ProtocolVersion(1, minor, 0) for minor in range(8))


class OpCode(enum.IntEnum):
    """Request op codes (``ClientMessageParser``)."""

    RESOURCE_CLOSE = 0
    HEARTBEAT = 1
    GET_IDLE_TIMEOUT = 2

    CACHE_GET = 1000
    CACHE_PUT = 1001
    CACHE_PUT_IF_ABSENT = 1002
    CACHE_GET_ALL = 1003
    CACHE_PUT_ALL = 1004
    CACHE_GET_AND_PUT = 1005
    CACHE_GET_AND_REPLACE = 1006
    CACHE_GET_AND_REMOVE = 1007
    CACHE_GET_AND_PUT_IF_ABSENT = 1008
    CACHE_REPLACE = 1009
    CACHE_REPLACE_IF_EQUALS = 1010
    CACHE_CONTAINS_KEY = 1011
    CACHE_CONTAINS_KEYS = 1012
    CACHE_CLEAR = 1013
    CACHE_CLEAR_KEY = 1014
    CACHE_CLEAR_KEYS = 1015
    CACHE_REMOVE_KEY = 1016
    CACHE_REMOVE_IF_EQUALS = 1017
    CACHE_REMOVE_KEYS = 1018
    CACHE_REMOVE_ALL = 1019
    CACHE_GET_SIZE = 1020
    CACHE_LOCAL_PEEK = 1021

    CACHE_GET_NAMES = 1050
    CACHE_CREATE_WITH_NAME = 1051
    CACHE_GET_OR_CREATE_WITH_NAME = 1052
    CACHE_CREATE_WITH_CONFIGURATION = 1053
    CACHE_GET_OR_CREATE_WITH_CONFIGURATION = 1054
    CACHE_GET_CONFIGURATION = 1055
    CACHE_DESTROY = 1056
    CACHE_PARTITIONS = 1101

    QUERY_SCAN = 2000
    QUERY_SCAN_CURSOR_GET_PAGE = 2001
    QUERY_SQL = 2002
    QUERY_SQL_CURSOR_GET_PAGE = 2003
    QUERY_SQL_FIELDS = 2004
    QUERY_SQL_FIELDS_CURSOR_GET_PAGE = 2005
    QUERY_CONTINUOUS = 2006
    QUERY_CONTINUOUS_EVENT_NOTIFICATION = 2007
    QUERY_INDEX = 2008
    QUERY_INDEX_CURSOR_GET_PAGE = 2009

    GET_BINARY_TYPE_NAME = 3000
    REGISTER_BINARY_TYPE_NAME = 3001
    GET_BINARY_TYPE = 3002
    PUT_BINARY_TYPE = 3003
    GET_BINARY_CONFIGURATION = 3004

    TX_START = 4000
    TX_END = 4001

    CLUSTER_GET_STATE = 5000
    CLUSTER_CHANGE_STATE = 5001
    CLUSTER_CHANGE_WAL_STATE = 5002
    CLUSTER_GET_WAL_STATE = 5003
    CLUSTER_GROUP_GET_NODE_IDS = 5100
    CLUSTER_GROUP_GET_NODE_INFO = 5101
    CLUSTER_GROUP_GET_NODE_ENDPOINTS = 5102

    COMPUTE_TASK_EXECUTE = 6000
    COMPUTE_TASK_FINISHED = 6001

    SERVICE_INVOKE = 7000
    SERVICE_GET_DESCRIPTORS = 7001
    SERVICE_GET_DESCRIPTOR = 7002
    SERVICE_GET_TOPOLOGY = 7003

    DATA_STREAMER_START = 8000
    DATA_STREAMER_ADD_DATA = 8001


class Status(enum.IntEnum):
    """Response status codes (``ClientStatus``)."""

    SUCCESS = 0
    FAILED = 1
    INVALID_OP_CODE = 2
    FUNCTIONALITY_DISABLED = 100
    CACHE_DOES_NOT_EXIST = 1000
    CACHE_EXISTS = 1001
    TOO_MANY_CURSORS = 1010
    RESOURCE_DOES_NOT_EXIST = 1011
    SECURITY_VIOLATION = 1012
    TX_LIMIT_EXCEEDED = 1020
    TX_NOT_FOUND = 1021
    TOO_MANY_COMPUTE_TASKS = 1030
    AUTH_FAILED = 2000


class Feature(enum.IntEnum):
    """Feature bit numbers (``ClientBitmaskFeature``)."""

    USER_ATTRIBUTES = 0
    EXECUTE_TASK_BY_NAME = 1
    CLUSTER_STATES = 2
    CLUSTER_GROUP_GET_NODES_ENDPOINTS = 3
    CLUSTER_GROUPS = 4
    SERVICE_INVOKE = 5
    DEFAULT_QRY_TIMEOUT = 6
    QRY_PARTITIONS_BATCH_SIZE = 7
    BINARY_CONFIGURATION = 8
    GET_SERVICE_DESCRIPTORS = 9
    SERVICE_INVOKE_CALLCTX = 10
    HEARTBEAT = 11
    DATA_REPLICATION_OPERATIONS = 12
    ALL_AFFINITY_MAPPINGS = 13
    INDEX_QUERY = 14
    INDEX_QUERY_LIMIT = 15
    SERVICE_MAPPINGS = 16


class ResponseFlag(enum.IntFlag):
    """Bits of the int16 flags field of a >= 1.4 response header (``ClientFlag``)."""

    ERROR = 1
    AFFINITY_TOPOLOGY_CHANGED = 2
    NOTIFICATION = 4


def features_mask(*features: Feature) -> bytes:
    """The feature mask with exactly these bits set."""
    if not features:
        return b""
    mask = bytearray(max(features) // 8 + 1)
    for f in features:
        mask[f >> 3] |= 1 << (f & 7)
    return bytes(mask)


# What this client asks for, and why each bit is safe:
#   CLUSTER_STATES (2)      op 5000/5001 carry the full state byte (ACTIVE_READ_ONLY too).
#   DEFAULT_QRY_TIMEOUT (6) a query timeout of 0 means "the server's default", not "none";
#                           changes no bytes.
#   HEARTBEAT (11)          ops 1 and 2 are available for keep-alive.
# Left out on purpose: USER_ATTRIBUTES (0) adds a Map to the handshake, QRY_PARTITIONS_BATCH_SIZE
# (7) adds fields to every SQL request, ALL_AFFINITY_MAPPINGS (13) changes op 1101 both ways.
# ``encode_sql_fields``/``encode_cache_partitions``/``decode_cache_partitions`` take the
# negotiated mask, so turning 7 or 13 on later needs no change below this line.
CLIENT_FEATURES: bytes = features_mask(
    Feature.CLUSTER_STATES, Feature.DEFAULT_QRY_TIMEOUT, Feature.HEARTBEAT)


def features_intersection(a: bytes, b: bytes) -> bytes:
    """The features both masks have (trailing zero bytes kept to the shorter length)."""
    return bytes(x & y for x, y in zip(a, b, strict=False))


def has_feature(mask: bytes, f: Feature | int) -> bool:
    """Whether feature ``f`` is set in ``mask``."""
    i = int(f) >> 3
    return i < len(mask) and bool(mask[i] & (1 << (int(f) & 7)))
