"""The one rule for stream names (SPEC §8) and the keys link-fetcher keeps for itself."""

from __future__ import annotations

import pytest

from link_fetcher import stream_names

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", ["a", "to-download", "S2.l1c_stream:eu-1", "x" * 256])
def test_names_of_the_allowed_characters_up_to_256_are_valid(name: str) -> None:
    assert stream_names.is_valid(name)
    assert stream_names.check(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("x" * 257, "at most 256"),
        ("x" * 30_000, "at most 256"),
        ("a*", "characters outside"),
        ("a\r\nb", "characters outside"),
        ("a\n", "characters outside"),
        ("a b", "characters outside"),
        ("é", "characters outside"),
        ("a/b", "characters outside"),
    ],
)
def test_other_names_are_refused_saying_why(name: str, why: str) -> None:
    assert not stream_names.is_valid(name)
    with pytest.raises(ValueError, match=why):
        stream_names.check(name)


def test_the_receipts_key_is_reserved_and_is_itself_a_valid_name() -> None:
    key = stream_names.receipts_key("to-download")
    assert key == "to-download:relayed"
    assert stream_names.is_valid(key)
    assert stream_names.is_reserved(key)
    assert not stream_names.is_reserved("to-download")
    assert not stream_names.is_reserved("relayed")


def test_bookkeeping_keys_are_reserved() -> None:
    key = stream_names.reserved_key("consumers", "to-download", "g1")
    assert stream_names.is_reserved(key)
    assert key.startswith(stream_names.RESERVED_PREFIX)
