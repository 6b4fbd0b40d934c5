"""The HPACK encoder: whatever it writes, hpack's decoder reads back as the fields it
was given, across blocks sharing one dynamic table, evictions and size changes."""

from __future__ import annotations

import random

from hpack import Decoder, NeverIndexedHeaderTuple

from mosn_http2.encoder import MAX_TABLE_SIZE, Encoder

RESPONSE = [(b":status", b"200"), (b"server", b"nghttpd nghttp2/1.52.0"), (b"content-length", b"6"),
            (b"content-type", b"text/html"), (b"x-custom", b"value")]


def decoded(decoder: Decoder, block: bytes) -> list[tuple[bytes, bytes]]:
    return [(bytes(n), bytes(v)) for n, v in decoder.decode(block, raw=True)]


def test_repeated_block_is_indexed_and_decodes():
    encoder, decoder = Encoder(), Decoder()
    first = encoder.encode(RESPONSE)
    second = encoder.encode(RESPONSE)
    assert decoded(decoder, first) == RESPONSE
    assert decoded(decoder, second) == RESPONSE
    assert len(second) == len(RESPONSE)  # one byte per field: all indexed


def test_random_blocks_with_evictions_and_size_changes_decode():
    rng = random.Random(7)
    encoder, decoder = Encoder(), Decoder()
    names = [b"x-%d" % i for i in range(40)] + [b"content-type", b"date", b"cookie", b"authorization"]
    for n in range(2000):
        if n % 300 == 299:  # the peer's SETTINGS_HEADER_TABLE_SIZE changes
            size = rng.choice([0, 64, 256, 4096, 65536])
            encoder.header_table_size = size
            decoder.max_allowed_table_size = size
        block = [(b":status", b"200")] + [
            (rng.choice(names), (b"v" * rng.randrange(0, 300)) + b"%d" % rng.randrange(50))
            for _ in range(rng.randrange(1, 12))]
        assert decoded(decoder, encoder.encode(block)) == block
    table = decoder.header_table.dynamic_entries  # never above our limit, whatever the peer allows
    assert sum(32 + len(n) + len(v) for n, v in table) <= MAX_TABLE_SIZE


def test_credentials_are_never_indexed():
    encoder, decoder = Encoder(), Decoder()
    block = [(b"authorization", b"Bearer secret"), (b"cookie", b"a=1"),
             NeverIndexedHeaderTuple(b"x-token", b"t")]
    for _ in range(2):
        assert decoded(decoder, encoder.encode(block)) == [tuple(f) for f in block]
    assert not decoder.header_table.dynamic_entries  # none entered the dynamic table


def test_request_ids_stay_out_of_the_table():
    encoder, decoder = Encoder(), Decoder()
    for n in range(3):
        block = [(b":method", b"GET"), (b"x-request-id", b"%036d" % n), (b"x-forwarded-for", b"127.0.0.1")]
        assert decoded(decoder, encoder.encode(block)) == block
    assert [n for n, _ in decoder.header_table.dynamic_entries] == [b"x-forwarded-for"]
