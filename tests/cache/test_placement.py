"""Key placement by weighted rendezvous hashing: balance, weights, monotonicity, stability across processes.

The properties are checked two ways: over fixed, large key sets (the statistics need
many keys) and over node sets and keys drawn by hypothesis (the rules hold for any).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xxhash import xxh3_64_intdigest

from drivers.cache.placement import Placement
from drivers.errors import InterfaceError
from tests.conftest import ROOT

KEYS = [f"user:{i}:profile" for i in range(100_000)]

node_ids = st.text(min_size=1, max_size=12)
weights = st.sampled_from([0.5, 1.0, 1.0, 2.0, 3.0, 7.5])
node_sets = st.dictionaries(node_ids, weights, min_size=1, max_size=8)
key_lists = st.lists(st.text(max_size=24), min_size=1, max_size=200)


def nodes(n: int, weight: float = 1.0) -> dict[str, float]:
    return {f"10.0.0.{i}:6379": weight for i in range(n)}


def loads(placement: Placement, keys: list[str]) -> Counter[str]:
    return Counter(placement.node_for(k) for k in keys)


def reference_node_for(node_weights: dict[str, float], key: str) -> str:
    """The placement rule written out plainly: score = -weight / ln(h / 2^64), highest wins."""
    def score(node: str) -> float:
        h = xxh3_64_intdigest(key.encode(), xxh3_64_intdigest(node.encode()))
        return -node_weights[node] / math.log((h + 0.5) / 2**64)
    return max(node_weights, key=score)


@pytest.mark.parametrize("node_weights", [nodes(3), nodes(10), {"a": 1.0, "b": 2.0, "c": 0.5, "d": 4.0}])
def test_placement_follows_the_logarithmic_rendezvous_formula(node_weights: dict[str, float]) -> None:
    placement = Placement(node_weights)
    assert all(placement.node_for(k) == reference_node_for(node_weights, k) for k in KEYS[:5000])


def test_ten_equal_nodes_share_100k_keys_within_2_percent() -> None:
    counts = loads(Placement(nodes(10)), KEYS)
    assert len(counts) == 10
    mean = statistics.mean(counts.values())
    assert statistics.pstdev(counts.values()) < 0.02 * mean, counts


def test_a_node_holds_keys_in_proportion_to_its_weight() -> None:
    node_weights = {"a:1": 1.0, "b:1": 2.0, "c:1": 3.0, "d:1": 4.0}
    counts = loads(Placement(node_weights), KEYS)
    total = sum(node_weights.values())
    for node, weight in node_weights.items():
        expected = len(KEYS) * weight / total
        assert abs(counts[node] - expected) < 0.04 * expected, (node, counts)


def test_going_from_n_to_n_plus_1_nodes_moves_about_1_in_n_plus_1_keys_all_to_the_new_node() -> None:
    before, after = Placement(nodes(10)), Placement(nodes(11))
    moved = [(before.node_for(k), after.node_for(k)) for k in KEYS if before.node_for(k) != after.node_for(k)]
    assert {new for _, new in moved} == {"10.0.0.10:6379"}
    assert abs(len(moved) / len(KEYS) - 1 / 11) < 0.1 / 11, len(moved)


def test_removing_a_node_moves_only_its_keys_spread_over_the_others() -> None:
    full = nodes(10)
    before = Placement(full)
    after = Placement({n: w for n, w in full.items() if n != "10.0.0.3:6379"})
    moved = Counter()
    for k in KEYS:
        old, new = before.node_for(k), after.node_for(k)
        if old != new:
            assert old == "10.0.0.3:6379"
            moved[new] += 1
        else:
            assert old != "10.0.0.3:6379"
    assert len(moved) == 9 and min(moved.values()) > 0.8 * max(moved.values()), moved


@settings(max_examples=100, deadline=None)
@given(node_sets, node_ids, weights, key_lists)
def test_a_node_added_only_takes_keys(node_weights: dict[str, float], extra: str, weight: float,
                                      keys: list[str]) -> None:
    if extra in node_weights:
        return
    before, after = Placement(node_weights), Placement({**node_weights, extra: weight})
    for k in keys:
        assert after.node_for(k) in (before.node_for(k), extra)


@settings(max_examples=100, deadline=None)
@given(node_sets.filter(lambda d: len(d) > 1), st.data(), key_lists)
def test_a_node_removed_gives_away_only_its_own_keys(node_weights: dict[str, float], data: st.DataObject,
                                                     keys: list[str]) -> None:
    gone = data.draw(st.sampled_from(sorted(node_weights)))
    before = Placement(node_weights)
    after = Placement({n: w for n, w in node_weights.items() if n != gone})
    for k in keys:
        if before.node_for(k) != gone:
            assert after.node_for(k) == before.node_for(k)


@settings(max_examples=100, deadline=None)
@given(node_sets, key_lists)
def test_group_gives_every_position_once_in_order_under_its_node(node_weights: dict[str, float],
                                                                 keys: list[str]) -> None:
    placement = Placement(node_weights)
    groups = placement.group(keys)
    assert sorted(i for positions in groups.values() for i in positions) == list(range(len(keys)))
    for node, positions in groups.items():
        assert positions == sorted(positions)
        assert all(placement.node_for(keys[i]) == node for i in positions)


def test_group_of_no_keys_is_empty() -> None:
    assert Placement(nodes(3)).group([]) == {}


_CHILD = """
import json, sys
from drivers.cache.placement import Placement
keys = [f"order:{i}" for i in range(1000)]
p = Placement({"a:6379": 1.0, "b:6379": 2.0, "c:6379": 1.0})
q = Placement({"a:6379": 1.0, "b:6379": 1.0, "c:6379": 1.0})
print(json.dumps({"salted": hash("order:1"), "weighted": [p.node_for(k) for k in keys],
                  "equal": [q.node_for(k) for k in keys]}))
"""


def test_another_process_with_another_hash_seed_places_1000_keys_the_same() -> None:
    keys = [f"order:{i}" for i in range(1000)]
    weighted = Placement({"a:6379": 1.0, "b:6379": 2.0, "c:6379": 1.0})
    equal = Placement({"a:6379": 1.0, "b:6379": 1.0, "c:6379": 1.0})
    seed = "12345" if os.environ.get("PYTHONHASHSEED") != "12345" else "54321"
    done = subprocess.run([sys.executable, "-c", _CHILD], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONHASHSEED": seed}, timeout=60)
    child = json.loads(done.stdout)
    assert child["salted"] != hash("order:1"), "the child's str hash should differ from this process's"
    assert child["weighted"] == [weighted.node_for(k) for k in keys]
    assert child["equal"] == [equal.node_for(k) for k in keys]


@pytest.mark.parametrize(("node_weights", "message"), [
    ({}, "at least one node"),
    ({"": 1.0}, "non-empty str"),
    ({"a": 0.0}, "positive finite"),
    ({"a": -1.0}, "positive finite"),
    ({"a": math.inf}, "positive finite"),
    ({"a": math.nan}, "positive finite"),
    ({"a": True}, "positive finite"),
    ({"a": "2"}, "positive finite"),
])
def test_an_unusable_node_set_is_an_interface_error(node_weights: dict[str, float], message: str) -> None:
    with pytest.raises(InterfaceError, match=message):
        Placement(node_weights)
