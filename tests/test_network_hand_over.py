"""Connection.hand_over: one codec gives its connection to another (an HTTP/1.1
upgrade to h2c does, end to end, in plugins/http2/tests/test_http2_e2e.py)."""

from __future__ import annotations

import asyncio

from mosn.network import Connection, ConnectionCallbacks, ReadFilter


class Codec(ReadFilter, ConnectionCallbacks):
    pass


def test_hand_over_moves_the_connection_and_puts_a_declined_codec_back():
    loop = asyncio.new_event_loop()
    try:
        conn = Connection(loop)
        first, codec, last, other = Codec(), Codec(), Codec(), Codec()
        for f in (first, codec, last):
            conn.add_read_filter(f)
        conn.add_callbacks(codec)

        def decline() -> bool:
            assert codec not in conn.read_filters and codec not in conn.callbacks
            return False

        assert conn.hand_over(codec, decline) is False
        assert conn.read_filters == [first, codec, last]  # back where it was
        assert conn.callbacks == [codec]

        def take() -> bool:
            conn.add_read_filter(other)
            conn.add_callbacks(other)
            return True

        assert conn.hand_over(codec, take) is True
        assert conn.read_filters == [first, last, other]
        assert conn.callbacks == [other]
    finally:
        loop.close()
