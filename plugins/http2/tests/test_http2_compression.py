"""HPACK: whatever the encoder writes, hpack's decoder and ours read back as the
fields it was given, across blocks sharing one dynamic table, evictions and size
changes; our decoder reads what hpack's encoder writes and refuses what hpack's
decoder refuses."""

from __future__ import annotations

import random

import pytest
from hpack import Decoder as HpackDecoder
from hpack import Encoder as HpackEncoder
from hpack import NeverIndexedHeaderTuple
from hpack.exceptions import HPACKDecodingError

from mosn_http2.compression import MAX_TABLE_SIZE, Decoder, Encoder

RESPONSE = [(b":status", b"200"), (b"server", b"nghttpd nghttp2/1.52.0"), (b"content-length", b"6"),
            (b"content-type", b"text/html"), (b"x-custom", b"value")]


def decoded(decoder: HpackDecoder, block: bytes) -> list[tuple[bytes, bytes]]:
    return [(bytes(n), bytes(v)) for n, v in decoder.decode(block, raw=True)]


def random_blocks(seed: int):
    """Header lists with repeated and long fields; now and then a table size change
    (an int: the peer's new SETTINGS_HEADER_TABLE_SIZE)."""
    rng = random.Random(seed)
    names = [b"x-%d" % i for i in range(40)] + [b"content-type", b"date", b"cookie", b"authorization"]
    for n in range(2000):
        if n % 300 == 299:
            yield rng.choice([0, 64, 256, 4096, 65536])
        yield [(b":status", b"200")] + [
            (rng.choice(names), (b"v" * rng.randrange(0, 300)) + b"%d" % rng.randrange(50))
            for _ in range(rng.randrange(1, 12))]


def test_repeated_block_is_indexed_and_decodes():
    encoder, decoder = Encoder(), Decoder()
    first = encoder.encode(RESPONSE)
    second = encoder.encode(RESPONSE)
    assert decoded(decoder, first) == RESPONSE
    assert decoded(decoder, second) == RESPONSE
    assert len(second) == len(RESPONSE)  # one byte per field: all indexed


@pytest.mark.parametrize("encoder_type, decoder_type", [
    (Encoder, HpackDecoder), (Encoder, Decoder), (HpackEncoder, Decoder)])
def test_random_blocks_with_evictions_and_size_changes(encoder_type, decoder_type):
    encoder, decoder = encoder_type(), decoder_type()
    for block in random_blocks(7):
        if isinstance(block, int):
            encoder.header_table_size = decoder.max_allowed_table_size = block
            continue
        assert decoded(decoder, encoder.encode(block)) == block


def test_encoder_table_stays_within_its_limit():
    encoder, decoder = Encoder(), HpackDecoder()
    encoder.header_table_size = decoder.max_allowed_table_size = 65536
    for block in random_blocks(9):
        if not isinstance(block, int):
            decoded(decoder, encoder.encode(block))
        table = decoder.header_table.dynamic_entries
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


@pytest.mark.parametrize("block", [
    b"\x80",  # index 0
    b"\xbf",  # index 63: past an empty dynamic table
    b"\xff\x80\x01",  # a multi-byte index past the table
    b"\x82\x3f\xe1\x1f",  # a table size update after a field
    b"\x40\x05ab",  # a truncated literal
])
def test_decoder_refuses_what_hpack_refuses(block):
    for decoder in (HpackDecoder(), Decoder()):
        with pytest.raises(HPACKDecodingError):
            decoder.decode(block, raw=True)


def test_decoder_holds_the_header_list_limit():
    decoder = Decoder()
    decoder.max_header_list_size = 100
    with pytest.raises(HPACKDecodingError):
        decoder.decode(Encoder().encode([(b"x-a", b"v" * 80), (b"x-b", b"v")]), raw=True)
