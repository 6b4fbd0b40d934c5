"""Status mapping, both ways, as MOSN's bolt protocol maps them."""

from __future__ import annotations

import pytest

from mosn_sofarpc import ResponseStatus, error_status, http_status

S = ResponseStatus


@pytest.mark.parametrize("status, flags, expected", [
    (200, (), S.SUCCESS),
    (404, ("NR",), S.NO_PROCESSOR),                   # no route
    (503, ("UH",), S.NO_PROCESSOR),                   # no healthy upstream
    (503, ("NC",), S.NO_PROCESSOR),                   # no cluster
    (503, ("UF",), S.NO_PROCESSOR),                   # upstream connection failure
    (503, ("UO",), S.SERVER_THREADPOOL_BUSY),         # overflow
    (503, ("UF", "UO"), S.SERVER_THREADPOOL_BUSY),
    (503, ("OM",), S.SERVER_THREADPOOL_BUSY),         # shed by the overload manager
    (502, ("UR",), S.NO_PROCESSOR),                   # upstream reset: MOSN's NoHealthUpstreamCode
    (502, ("UC",), S.NO_PROCESSOR),                   # connection lost
    (504, ("UT",), S.TIMEOUT),
    (400, (), S.CODEC_EXCEPTION),
    (403, (), S.SERVER_EXCEPTION),                    # bolt has no permission-denied status
    (500, (), S.UNKNOWN),
    (429, ("RL",), S.SERVER_THREADPOOL_BUSY),        # rate limited: "busy", retry later
])
def test_error_status(status: int, flags: tuple[str, ...], expected: int) -> None:
    assert error_status(status, flags) == expected


@pytest.mark.parametrize("status, expected", [
    (S.SUCCESS, 200),
    (S.SERVER_THREADPOOL_BUSY, 503),
    (S.TIMEOUT, 504),
    (S.CONNECTION_CLOSED, 502),
    (S.SERVER_EXCEPTION, 500),
    (S.NO_PROCESSOR, 500),
    (S.CODEC_EXCEPTION, 500),
    (0x7F, 500),
])
def test_http_status(status: int, expected: int) -> None:
    assert http_status(status) == expected
