"""Type codes of the Ignite binary format (``GridBinaryMarshaller``) and collection kinds.

Rules of this file: numbers only, each named as the Java marshaller names it.
A type code is the first byte of every typed value on the wire.
"""

from __future__ import annotations

import enum


class TypeCode(enum.IntEnum):
    """The first byte of a typed value."""

    BYTE = 1
    SHORT = 2
    INT = 3
    LONG = 4
    FLOAT = 5
    DOUBLE = 6
    CHAR = 7
    BOOL = 8
    STRING = 9
    UUID = 10
    DATE = 11
    BYTE_ARR = 12
    SHORT_ARR = 13
    INT_ARR = 14
    LONG_ARR = 15
    FLOAT_ARR = 16
    DOUBLE_ARR = 17
    CHAR_ARR = 18
    BOOL_ARR = 19
    STRING_ARR = 20
    UUID_ARR = 21
    DATE_ARR = 22
    OBJ_ARR = 23
    COLLECTION = 24
    MAP = 25
    BINARY_OBJ = 27
    ENUM = 28
    ENUM_ARR = 29
    DECIMAL = 30
    DECIMAL_ARR = 31
    CLASS = 32
    TIMESTAMP = 33
    TIMESTAMP_ARR = 34
    PROXY = 35
    TIME = 36
    TIME_ARR = 37
    BINARY_ENUM = 38
    NULL = 101
    HANDLE = 102
    COMPLEX_OBJ = 103
    OPTIMIZED = 254


class CollectionKind(enum.IntEnum):
    """The byte after a Collection's size (``GridBinaryMarshaller``)."""

    USER_SET = -1
    USER_COL = 0
    ARRAY_LIST = 1
    LINKED_LIST = 2
    HASH_SET = 3
    LINKED_HASH_SET = 4
    SINGLETON_LIST = 5


class MapKind(enum.IntEnum):
    """The byte after a Map's size; Java also reads USER_COL (0) as a HashMap."""

    USER_MAP = 0
    HASH_MAP = 1
    LINKED_HASH_MAP = 2


SET_KINDS = frozenset({CollectionKind.USER_SET, CollectionKind.HASH_SET, CollectionKind.LINKED_HASH_SET})

# Object[] component type ids: -1 is java.lang.Object; 0 means "unregistered",
# and then a String with the Java class name follows (BinaryUtils.doReadClass).
OBJECT_TYPE_ID = -1
UNREGISTERED_TYPE_ID = 0
