"""The 64-bit hash behind consistent hashing (ring hash, maglev, route hash keys).

It must give every worker process and every restart the same value for the same key,
so Python's salted ``hash()`` will not do; BLAKE2b cut to 8 bytes is in the standard
library, well mixed and fast in C.
"""

from __future__ import annotations

from hashlib import blake2b

MASK64 = (1 << 64) - 1


def hash64(data: bytes | str) -> int:
    if isinstance(data, str):
        data = data.encode()
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "little")


def combine(previous: int, value: int) -> int:
    """Envoy's way of folding several hash policies into one key: rotate, then xor."""
    return (((previous << 1) | (previous >> 63)) & MASK64) ^ value
