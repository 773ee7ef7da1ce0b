"""The Ignite binary value codec: Python values <-> typed values on the wire (sans-I/O).

Default mapping (writing by ``type(value)``; reading by type code):

==========================  ==========================  ==================================
Python value                written as (type code)      read back as
==========================  ==========================  ==================================
None                        null (101)                  None
bool                        boolean (8)                 bool
int                         long (4); outside int64 ->  int (also from byte 1/short 2/int 3)
                            LocalProtocolError
float                       double (6)                  float (also from float 5)
str                         String (9), UTF-8           str
bytes, bytearray            byte[] (12)                 bytes
uuid.UUID                   UUID (10)                   uuid.UUID
decimal.Decimal             Decimal (30)                decimal.Decimal (scale kept)
datetime.datetime           Timestamp (33); naive=UTC   aware UTC datetime (sub-µs nanos
                                                        dropped; use hints.Timestamp)
datetime.date               Date (11), UTC midnight     aware UTC datetime (a Java Date is
                                                        an instant, not a calendar day)
datetime.time               Time (36), ms of the day    datetime.time (ms precision)
list                        Collection (24) ArrayList   list (any non-set kind)
set, frozenset              Collection (24) HashSet     set (set kinds -1, 3, 4)
tuple                       Object[] (23), type id -1   list
dict                        Map (25) HashMap            dict (HashMap, LinkedHashMap)
registered class/dataclass  complex object (103)        that class
BinaryObject                complex object (103)        BinaryObject (type not bound to a
                                                        class)
hints.Int(5), Short, Byte,  int (3), short (2), byte    int / float / str
Long, Float, Double, Char   (1), long, float (5), ...
hints.*Array                typed arrays 12-22, 31,     list (byte[] -> bytes)
                            34, 37
hints.Enum / BinaryEnum     enum (28) / binary enum     hints.Enum / hints.BinaryEnum
                            (38)
hints.EnumArray             enum[] (29)                 list of hints.Enum
hints.ObjectArray           Object[] (23) + type id     list
hints.Collection / Map      24 / 25 with a kind         list or set / dict
hints.WrappedObject         wrapped object (27)         the object inside
hints.Date/Timestamp/Time   11 / 33 / 36 exactly        datetime / time (the hint itself when
                                                        outside Python's range)
==========================  ==========================  ==================================

Notes.  Lists are Collections because a Java ``List`` is one (pyignite instead
turns homogeneous lists into typed arrays such as long[]; it reads our
Collections fine).  ``datetime.timedelta`` is refused: a Java Time is a time of
day.  Handles (102) are followed when reading, never written.  Class (32),
proxy (35) and OptimizedMarshaller (254) values are Java-only and refused.
"""

from drivers.ignite.codec.binary import (
    BinaryField,
    BinaryObject,
    BinaryType,
    BinaryTypeRegistry,
    UnknownBinaryTypes,
)
from drivers.ignite.codec.reader import (
    ReadContext,
    read_many,
    read_string,
    read_value,
    read_values,
    read_with,
)
from drivers.ignite.codec.typecodes import CollectionKind, MapKind, TypeCode
from drivers.ignite.codec.writer import write_object, write_value

__all__ = [
    "BinaryField", "BinaryObject", "BinaryType", "BinaryTypeRegistry", "CollectionKind",
    "MapKind", "ReadContext", "TypeCode", "UnknownBinaryTypes", "read_many", "read_string", "read_value",
    "read_values", "read_with", "write_object", "write_value",
]
