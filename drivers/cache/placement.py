"""Which node holds a key: weighted rendezvous hashing (highest random weight), sans-I/O.

Rules of this file:
- Standard library, xxhash and the error tree only; no I/O, no clock, no randomness.
- Every node scores every key; the highest score holds it.  A node's score for a
  key is ``-weight / ln(u)``, where ``u`` in (0, 1) is the key's 64-bit xxh3 hash
  seeded with the node's own seed (the xxh3 hash of the node id), divided by 2^64.
  With that logarithmic method a node of weight 2 holds twice the keys of a node
  of weight 1.  The code compares the equivalent ``ln(u) / weight`` (a product by
  the precomputed ``1 / weight``: no division, and no infinity when ``u`` is 1).
- The hash is stable: the same key lands on the same node in every process, on
  every machine, whatever ``PYTHONHASHSEED`` says (Python's ``hash()`` is salted
  per process and is never used here).  Keys are hashed as their UTF-8 bytes.
- Changing the nodes moves only what must move: a node added takes about
  weight / total of the keys, each from whichever node held it; a node removed gives
  away only its own keys.  No key moves between two nodes that stayed.
- With equal weights the logarithm is skipped: it preserves order, so the node with
  the largest raw hash wins.  The two paths can disagree only when two 64-bit hashes
  of one key round to the same double (the top 53 bits equal), about 2^-53 per pair.
- A misuse (no nodes, an empty node id, a weight that is not a positive finite
  number) is an ``InterfaceError``, raised when the placement is built.

Measured (best of 7 loops over 10,000 distinct keys of ~16 bytes, one core of the
development machine, CPython 3.11; ``group`` adds about 0.2 µs per key):

    nodes   equal weights   mixed weights   (µs per ``node_for``)
      3         0.4             1.0
     10         1.0             2.8
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

from xxhash import xxh3_64_intdigest

from drivers.errors import InterfaceError

_INV_2_64 = 2.0 ** -64


def node_seed(node: str) -> int:
    """The 64-bit seed a node hashes keys with: the xxh3 hash of its id."""
    return xxh3_64_intdigest(node.encode())


class Placement:
    """Weighted rendezvous hashing over named nodes: ``Placement({"a:6379": 1, "b:6379": 2})``."""

    __slots__ = ("_equal", "_nodes", "_scored", "_seeded")

    def __init__(self, nodes: Mapping[str, float]) -> None:
        if not nodes:
            raise InterfaceError("cache: a placement needs at least one node", backend="cache")
        for node, weight in nodes.items():
            if not isinstance(node, str) or not node:
                raise InterfaceError(f"cache: a node id is a non-empty str, not {node!r}", backend="cache")
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) \
                    or weight <= 0:
                raise InterfaceError(f"cache: node {node}'s weight must be a positive finite number, "
                                     f"not {weight!r}", backend="cache")
        self._nodes = {node: float(weight) for node, weight in nodes.items()}
        # The fast path's tables: the seeds computed once, the weights as reciprocals.
        self._seeded = tuple((node, node_seed(node)) for node in self._nodes)
        self._scored = tuple((node, seed, 1.0 / self._nodes[node]) for node, seed in self._seeded)
        self._equal = len(set(self._nodes.values())) == 1

    def __repr__(self) -> str:
        return f"<Placement {len(self._nodes)} nodes>"

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[str]:
        return iter(self._nodes)

    @property
    def nodes(self) -> dict[str, float]:
        """The nodes and their weights (a copy)."""
        return dict(self._nodes)

    def node_for(self, key: str) -> str:
        """The node that holds ``key``."""
        data = key.encode()
        best = ""
        if self._equal:
            top = -1
            for node, seed in self._seeded:
                h = xxh3_64_intdigest(data, seed)
                if h > top:
                    top, best = h, node
            return best
        high = -math.inf
        log = math.log
        for node, seed, inverse in self._scored:
            score = log((xxh3_64_intdigest(data, seed) + 0.5) * _INV_2_64) * inverse
            if score > high:
                high, best = score, node
        return best

    def group(self, keys: Sequence[str]) -> dict[str, list[int]]:
        """The positions of ``keys`` grouped by the node that holds each, in the order they came.

        For batching: each node gets one request with ``[keys[i] for i in group[node]]``,
        and its answers go back to those positions.  Only nodes holding a key appear.
        """
        groups: dict[str, list[int]] = {}
        node_for = self.node_for
        for i, key in enumerate(keys):
            node = node_for(key)
            found = groups.get(node)
            if found is None:
                groups[node] = [i]
            else:
                found.append(i)
        return groups
