"""Payload encoders/decoders: byte layouts from the Java request/response classes."""

from __future__ import annotations

import struct
import uuid

import pytest

from drivers.ignite.codec import BinaryField, BinaryType, BinaryTypeRegistry, write_value
from drivers.ignite.errors import LocalProtocolError, RemoteProtocolError
from drivers.ignite.protocol import messages as m
from drivers.ignite.protocol.constants import Feature, ProtocolVersion, features_mask

V17 = ProtocolVersion(1, 7, 0)
REG = BinaryTypeRegistry()


def test_cache_header_variants() -> None:
    buf = bytearray()
    m.cache_header(buf, -5, m.CACHE_FLAG_KEEP_BINARY)
    assert buf == struct.pack("<iB", -5, 1)
    buf = bytearray()
    m.cache_header(buf, 7, 0, (-1, -2, 1000), 3)
    assert buf == struct.pack("<iBqqqi", 7, 0x06, -1, -2, 1000, 3)


def test_sql_fields_request_layout() -> None:
    buf = bytearray()
    m.encode_sql_fields(buf, REG, 0, "SELECT ?", [1], schema="PUBLIC", page_size=10,
                        timeout_ms=5, include_field_names=True)
    expected = (struct.pack("<iB", 0, 0) + b"\x09\x06\x00\x00\x00PUBLIC" + struct.pack("<ii", 10, -1)
                + b"\x09\x08\x00\x00\x00SELECT ?" + struct.pack("<i", 1)
                + b"\x04" + struct.pack("<q", 1) + b"\x00" + b"\x00" * 6 + struct.pack("<q", 5) + b"\x01")
    assert bytes(buf) == expected


def test_sql_fields_request_with_feature_7_adds_partitions_and_batch_size() -> None:
    buf = bytearray()
    f7 = features_mask(Feature.QRY_PARTITIONS_BATCH_SIZE)
    m.encode_sql_fields(buf, REG, 0, "x", features=f7, partitions=[1, 2], update_batch_size=4)
    assert buf.endswith(struct.pack("<iiii", 2, 1, 2, 4))
    with pytest.raises(LocalProtocolError):
        m.encode_sql_fields(bytearray(), REG, 0, "x", partitions=[1])


def _sql_reply(names: bool) -> bytes:
    body = struct.pack("<qi", 77, 2)
    if names:
        body += b"\x09\x01\x00\x00\x00A\x09\x01\x00\x00\x00B"
    body += struct.pack("<i", 2)
    for row in ((1, "x"), (2, None)):
        buf = bytearray()
        for v in row:
            write_value(buf, v, REG)
        body += buf
    return body + b"\x01"


def test_sql_fields_reply_with_and_without_names() -> None:
    r = m.decode_sql_fields(memoryview(_sql_reply(True)), 0, REG, True)
    assert r == m.SqlFieldsResult(77, 2, ("A", "B"), [[1, "x"], [2, None]], True)
    r = m.decode_sql_fields(memoryview(_sql_reply(False)), 0, REG, False)
    assert r.field_names is None and r.rows == [[1, "x"], [2, None]]
    page = m.decode_sql_fields_page(memoryview(_sql_reply(False)[12:]), 0, REG, 2)
    assert page == m.SqlFieldsPage([[1, "x"], [2, None]], True)


def test_scan_request_and_reply() -> None:
    buf = bytearray()
    m.encode_scan(buf, REG, 9, page_size=100)
    assert buf == struct.pack("<iB", 9, 0) + b"\x65" + struct.pack("<ii?", 100, -1, False)
    buf = bytearray()
    m.encode_scan(buf, REG, 9, filter="f")
    assert buf[5:12] == b"\x09\x01\x00\x00\x00f\x01"  # filter, then platform JAVA
    reply = bytearray(struct.pack("<qi", 5, 1))
    write_value(reply, "k", REG)
    write_value(reply, 2, REG)
    reply += b"\x00"
    assert m.decode_scan(memoryview(bytes(reply)), 0, REG) == m.ScanResult(5, [("k", 2)], False)
    assert m.decode_scan_page(memoryview(bytes(reply[8:])), 0, REG) == m.ScanPage([("k", 2)], False)


def test_get_all_reply() -> None:
    reply = bytearray(struct.pack("<i", 2))
    for v in (1, "a", 2, "b"):
        write_value(reply, v, REG)
    assert m.decode_get_all(memoryview(bytes(reply)), 0, REG) == [(1, "a"), (2, "b")]


META = BinaryType(123, "T", "k", (BinaryField("k", 4, 107), BinaryField("v", 9, 118)),
                  False, (), ((55, (107, 118)),))
ENUM_META = BinaryType(9, "Color", None, (), True, (("RED", 0), ("GREEN", 1)), ())


@pytest.mark.parametrize("meta", [META, ENUM_META])
def test_binary_type_round_trip(meta: BinaryType) -> None:
    buf = bytearray()
    m.encode_binary_type(buf, meta)
    assert m.decode_binary_type(memoryview(bytes(buf)), 0) == meta
    assert m.decode_binary_type_reply(memoryview(b"\x01" + bytes(buf)), 0) == meta
    assert m.decode_binary_type_reply(memoryview(b"\x00"), 0) is None


def test_binary_type_layout() -> None:
    buf = bytearray()
    m.encode_binary_type(buf, META)
    assert bytes(buf) == (struct.pack("<i", 123) + b"\x09\x01\x00\x00\x00T" + b"\x09\x01\x00\x00\x00k"
                          + struct.pack("<i", 2)
                          + b"\x09\x01\x00\x00\x00k" + struct.pack("<ii", 4, 107)
                          + b"\x09\x01\x00\x00\x00v" + struct.pack("<ii", 9, 118)
                          + b"\x00" + struct.pack("<iiiii", 1, 55, 2, 107, 118))


def _partitions_reply(with_default: bool) -> bytes:
    node = uuid.UUID(int=5)
    body = struct.pack("<qii", 10, 2, 2)
    # group 1: applicable, one cache with one key config, one node with partitions 0 and 3
    body += b"\x01" + struct.pack("<iiiii", 1, 100, 1, 7, 8)
    body += struct.pack("<i", 1) + b"\x0a" + struct.pack("<QQ", 0, 5) + struct.pack("<iii", 2, 0, 3)
    if with_default:
        body += b"\x01"
    # group 2: not applicable, two caches
    body += b"\x00" + struct.pack("<iii", 2, 200, 201)
    if with_default:
        body += b"\x00"
    assert node.int == 5
    return body


@pytest.mark.parametrize("with_default", [False, True])
def test_cache_partitions_reply(with_default: bool) -> None:
    features = features_mask(Feature.ALL_AFFINITY_MAPPINGS) if with_default else b""
    r = m.decode_cache_partitions(memoryview(_partitions_reply(with_default)), 0, features)
    assert r.topology == (10, 2)
    g1, g2 = r.groups
    assert g1 == m.PartitionGroup(True, (m.CacheKeyMapping(100, ((7, 8),)),),
                                  {uuid.UUID(int=5): (0, 3)}, True if with_default else None)
    assert g2.applicable is False and [c.cache_id for c in g2.caches] == [200, 201]
    assert g2.default_affinity is (False if with_default else None)


def test_cache_partitions_request() -> None:
    buf = bytearray()
    m.encode_cache_partitions(buf, [1, 2])
    assert buf == struct.pack("<iii", 2, 1, 2)
    buf = bytearray()
    m.encode_cache_partitions(buf, [1], features_mask(Feature.ALL_AFFINITY_MAPPINGS))
    assert buf == b"\x00" + struct.pack("<ii", 1, 1)


def test_tx_and_cluster_payloads() -> None:
    buf = bytearray()
    m.encode_tx_start(buf, m.Concurrency.PESSIMISTIC, m.Isolation.REPEATABLE_READ, 1000, "lbl")
    assert buf == b"\x01\x01" + struct.pack("<q", 1000) + b"\x09\x03\x00\x00\x00lbl"
    buf = bytearray()
    m.encode_tx_end(buf, 4, True)
    assert buf == struct.pack("<i?", 4, True)
    buf = bytearray()
    m.encode_cluster_change_state(buf, m.ClusterState.ACTIVE_READ_ONLY)
    assert buf == b"\x02"
    assert m.decode_cluster_state(memoryview(b"\x01"), 0) is m.ClusterState.ACTIVE
    with pytest.raises(RemoteProtocolError):
        m.decode_cluster_state(memoryview(b"\x09"), 0)


CONFIG = m.CacheConfig(
    name="people", cache_mode=m.CacheMode.PARTITIONED, atomicity_mode=m.AtomicityMode.TRANSACTIONAL,
    backups=1, write_synchronization_mode=m.WriteSyncMode.FULL_SYNC, sql_schema="PUBLIC",
    query_entities=(m.QueryEntity(
        "java.lang.Long", "Person", "PERSON", "id", None,
        (m.QueryField("id", "java.lang.Long", is_key_field=True),
         m.QueryField("name", "java.lang.String", is_notnull=True, default_value="n/a"),
         m.QueryField("salary", "java.math.BigDecimal", precision=10, scale=2)),
        (("name", "FULL_NAME"),),
        (m.QueryIndex("name_idx", m.IndexType.SORTED, -1, (("name", True),)),)),),
    expiry_policy=m.ExpiryPolicy(-1, 1000, -2),
)


def test_cache_config_create_payload_starts_with_length_and_count() -> None:
    buf = bytearray()
    m.encode_cache_config(buf, CONFIG, V17)
    length, count = struct.unpack_from("<ih", buf)
    assert length == len(buf) - 4
    assert count == 8
    assert buf[6:8] == struct.pack("<h", 0)  # NAME first
    buf2 = bytearray()
    m.encode_cache_config(buf2, CONFIG, ProtocolVersion(1, 5, 0))
    assert struct.unpack_from("<ih", buf2)[1] == 7  # no expiry policy before 1.6


def _get_config_reply(cfg: m.CacheConfig, version: ProtocolVersion) -> bytes:
    """Build the 1055 reply the way ClientCacheConfigurationSerializer.write orders it."""
    from drivers.ignite.protocol.wire import write_string
    b = bytearray(4)

    def i(v: int) -> None:
        b.extend(struct.pack("<i", v))

    def q(v: int) -> None:
        b.extend(struct.pack("<q", v))

    def z(v: bool) -> None:
        b.extend(struct.pack("<?", v))
    i(cfg.atomicity_mode or 0); i(cfg.backups or 0); i(cfg.cache_mode or 0); z(False)  # noqa: E702
    write_string(b, None); z(True); z(False); write_string(b, None); q(0); i(500); i(1024)  # noqa: E702
    write_string(b, cfg.name); z(False); i(4); i(0); i(1); z(True); i(512); q(0); q(0); i(1)  # noqa: E702
    i(0); q(0); q(10000); z(False); i(-1); write_string(b, cfg.sql_schema)  # noqa: E702
    i(cfg.write_synchronization_mode or 0)
    i(0)
    qe = bytearray()
    m.encode_cache_config(qe, m.CacheConfig("x", query_entities=cfg.query_entities), version)
    b.extend(qe[6 + 8 + 2:])  # skip length+count, the NAME property ("x"), the QUERY_ENTITIES code
    if version >= ProtocolVersion(1, 6, 0):
        e = cfg.expiry_policy
        z(True)
        assert e is not None
        q(e.create); q(e.update); q(e.access)  # noqa: E702
    struct.pack_into("<i", b, 0, len(b) - 4)
    return bytes(b)


@pytest.mark.parametrize("version", [ProtocolVersion(1, 7, 0), ProtocolVersion(1, 1, 0)])
def test_cache_config_reply_decodes(version: ProtocolVersion) -> None:
    got = m.decode_cache_config(memoryview(_get_config_reply(CONFIG, version)), 0, version)
    assert got.name == "people" and got.backups == 1 and got.sql_schema == "PUBLIC"
    assert got.atomicity_mode == m.AtomicityMode.TRANSACTIONAL
    entity = got.query_entities[0] if got.query_entities else None
    assert entity is not None and entity.key_fields == ("id",)
    expected_fields = CONFIG.query_entities[0].fields if CONFIG.query_entities else ()
    if version < ProtocolVersion(1, 2, 0):  # no precision/scale on the wire
        expected_fields = tuple(
            m.QueryField(f.name, f.type_name, f.is_key_field, f.is_notnull, f.default_value)
            for f in expected_fields)
    assert entity.fields == expected_fields
    assert CONFIG.query_entities and CONFIG.query_entities[0].indexes   # something to compare
    assert entity.indexes == CONFIG.query_entities[0].indexes
    assert got.expiry_policy == (CONFIG.expiry_policy if version >= ProtocolVersion(1, 6, 0) else None)
