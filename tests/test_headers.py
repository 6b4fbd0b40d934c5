"""``Headers``, the stream layer's header fields: built from pairs or from a flat list."""

from __future__ import annotations

import pytest

from mosn.stream import Headers


def test_from_flat_pairs_names_and_values_from_start() -> None:
    fields = ["GET", "http", "a.example", "/", "", "accept", "*/*", "x-id", "1", "accept", "text/html"]
    headers = Headers.from_flat(fields, 5)
    assert headers.items() == [("accept", "*/*"), ("x-id", "1"), ("accept", "text/html")]
    assert headers.get_all("accept") == ["*/*", "text/html"]
    assert headers == Headers([("accept", "*/*"), ("x-id", "1"), ("accept", "text/html")])


def test_from_flat_whole_list_and_empty() -> None:
    assert Headers.from_flat(["grpc-status", "0", "grpc-message", ""]).items() == [
        ("grpc-status", "0"), ("grpc-message", "")]
    assert len(Headers.from_flat([])) == 0
    assert len(Headers.from_flat(["200"], 1)) == 0


def test_from_flat_headers_are_independent_of_the_list() -> None:
    fields = ["a", "1"]
    headers = Headers.from_flat(fields)
    headers.add("b", "2")
    fields.append("c")
    assert headers.items() == [("a", "1"), ("b", "2")] and fields == ["a", "1", "c"]


def test_from_flat_refuses_a_name_without_value() -> None:
    with pytest.raises(ValueError, match="without a value"):
        Headers.from_flat(["200", "server"], 1)
