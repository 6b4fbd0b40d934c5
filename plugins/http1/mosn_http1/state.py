"""The state table of an HTTP/1 message exchange, by role (h11's ``_state.py`` shape).

Each message has two halves, each with its own state: the request, sent by the
CLIENT role, and the response, sent by the SERVER role. Every change of either goes
through :func:`advance`, one lookup in one table; an input the table has no entry
for raises :class:`StateError` naming the role, the state and the input, instead of
being ignored. A pipelined connection holds one exchange per request, so the state
lives with each exchange (a stream), not with the connection.

The states (h11's names where they mean the same):

- ``IDLE``: nothing of this half is sent yet.
- ``SEND_BODY``: the head is sent; body bytes follow.
- ``DONE``: this half is complete.
- ``SWITCHED_PROTOCOL``: a ``101`` or a ``2xx`` to ``CONNECT`` turned both halves
  into raw bytes of each direction (a tunnel), ended by EOF.
- ``CLOSED``: abandoned (reset, or the connection closed under it).

The inputs: ``HEAD`` (a head; the body follows), ``HEAD_END`` (a head that ends the
half), ``INTERIM`` (a 1xx response that is not the response), ``DATA``, ``END``,
``SWITCH`` (the tunnel opens), ``RESET``.
"""

from __future__ import annotations

IDLE = 0
SEND_BODY = 1
SWITCHED_PROTOCOL = 2
DONE = 3
"""This and the states after it are final: ``state >= DONE`` is "over"."""
CLOSED = 4
STATE_NAMES = ("IDLE", "SEND_BODY", "SWITCHED_PROTOCOL", "DONE", "CLOSED")

HEAD = 0
HEAD_END = 1
INTERIM = 2
DATA = 3
END = 4
SWITCH = 5
RESET = 6
INPUT_NAMES = ("HEAD", "HEAD_END", "INTERIM", "DATA", "END", "SWITCH", "RESET")

CLIENT = 0
SERVER = 1
ROLE_NAMES = ("CLIENT", "SERVER")

_INVALID = -1


class StateError(Exception):
    """An input the state table does not allow: a bug in what drives the codec (a
    head sent twice, data after the end), never the peer's doing (those are
    ``CodecError``)."""


def _table(entries: dict[tuple[int, int], int]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(entries.get((state, event), _INVALID) for event in range(len(INPUT_NAMES)))
                 for state in range(len(STATE_NAMES)))


_COMMON = {
    (IDLE, HEAD): SEND_BODY,
    (IDLE, HEAD_END): DONE,
    (SEND_BODY, DATA): SEND_BODY,
    (SEND_BODY, END): DONE,
    # A tunnel's bytes, either way; its end is the EOF of that direction.
    (SWITCHED_PROTOCOL, DATA): SWITCHED_PROTOCOL,
    (SWITCHED_PROTOCOL, END): DONE,
    (IDLE, RESET): CLOSED,
    (SEND_BODY, RESET): CLOSED,
    (SWITCHED_PROTOCOL, RESET): CLOSED,
    (DONE, RESET): DONE,  # nothing left to abandon
    (CLOSED, RESET): CLOSED,
}

TABLE: tuple[tuple[tuple[int, ...], ...], ...] = (
    # CLIENT: a request. Its body becomes the tunnel's client-to-server bytes once
    # the response accepts the upgrade (an upgrade request's head is read alone).
    _table({**_COMMON,
            (SEND_BODY, SWITCH): SWITCHED_PROTOCOL,
            (DONE, SWITCH): SWITCHED_PROTOCOL}),
    # SERVER: a response. 1xx heads come before it (RFC 9110 15.2); an accepted
    # upgrade's head opens the tunnel.
    _table({**_COMMON,
            (IDLE, INTERIM): IDLE,
            (IDLE, SWITCH): SWITCHED_PROTOCOL}),
)
"""``TABLE[role][state][input]`` is the next state, or -1: not allowed."""


def advance(role: int, state: int, event: int) -> int:
    """The state after ``event``; :class:`StateError` if the table refuses it."""
    nxt = TABLE[role][state][event]
    if nxt < 0:
        raise StateError(f"{ROLE_NAMES[role]} cannot take {INPUT_NAMES[event]} "
                         f"in state {STATE_NAMES[state]}")
    return nxt

