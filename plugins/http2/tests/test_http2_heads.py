"""Following a client's frames to know which header block is open (mosn_http2/heads.py):
bytes in, a stream id out, split at every byte."""

from __future__ import annotations

import hpack
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, SettingsFrame

from mosn_http2 import PREFACE
from mosn_http2.heads import HeaderBlockWatch

BLOCK = hpack.Encoder().encode([(":method", "POST"), (":scheme", "http"), (":path", "/"),
                                (":authority", "t")])


def opened_after_each_byte(data: bytes) -> list[int]:
    watch = HeaderBlockWatch()
    return [watch.feed(data[i:i + 1]) for i in range(len(data))]


def test_a_whole_headers_frame_opens_and_closes_its_block():
    opening = PREFACE + SettingsFrame(0).serialize()
    headers = HeadersFrame(1, data=BLOCK, flags=["END_HEADERS"]).serialize()
    data = DataFrame(1, data=b"body", flags=["END_STREAM"]).serialize()
    seen = opened_after_each_byte(opening + headers + data)
    start = len(opening)
    assert set(seen[:start + 8]) == {0}  # the preface, SETTINGS, a frame header not all in
    assert set(seen[start + 8:start + len(headers) - 1]) == {1}  # inside the HEADERS frame
    assert set(seen[start + len(headers) - 1:]) == {0}  # done, and DATA is no head


def test_a_block_stays_open_across_continuation_frames_until_end_headers():
    frames = (PREFACE + HeadersFrame(3, data=BLOCK[:2]).serialize()
              + ContinuationFrame(3, data=BLOCK[2:4]).serialize()
              + ContinuationFrame(3).serialize())
    watch = HeaderBlockWatch()
    assert watch.feed(frames) == 3  # between frames, still open
    assert watch.feed(ContinuationFrame(3, data=BLOCK[4:], flags=["END_HEADERS"]).serialize()) == 0


def test_frames_of_other_kinds_and_a_read_of_several_frames():
    watch = HeaderBlockWatch()
    frames = b"".join([PREFACE, SettingsFrame(0).serialize(),
                       HeadersFrame(1, data=BLOCK, flags=["END_HEADERS"]).serialize(),
                       HeadersFrame(3, data=BLOCK, flags=["END_HEADERS"]).serialize(),
                       DataFrame(1, data=b"x" * 100).serialize()])
    assert watch.feed(frames) == 0
    assert watch.feed(HeadersFrame(5, data=BLOCK, flags=["END_HEADERS"]).serialize()[:12]) == 5


def test_any_split_of_the_reads_gives_the_same_answers():
    opening = PREFACE + SettingsFrame(0).serialize() + DataFrame(1, data=b"d" * 30).serialize()
    block = (HeadersFrame(3, data=BLOCK[:2]).serialize()
             + ContinuationFrame(3, data=BLOCK[2:4]).serialize()
             + ContinuationFrame(3, data=BLOCK[4:], flags=["END_HEADERS"]).serialize())
    stream = opening + block + DataFrame(3, data=b"x" * 20).serialize()
    opens, closes = len(opening) + 9, len(opening) + len(block)

    def expected(k: int) -> int:  # bytes read so far -> the open block's stream
        return 3 if opens <= k < closes else 0

    for k in range(len(stream) + 1):
        for j in range(k, len(stream) + 1, 7):
            watch = HeaderBlockWatch()
            answers = [watch.feed(stream[:k]), watch.feed(stream[k:j]), watch.feed(stream[j:])]
            assert answers == [expected(k), expected(j), expected(len(stream))], (k, j)
