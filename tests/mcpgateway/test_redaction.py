"""The redactor: every encoded form of a secret, keyed markers, streamed text, the registry."""

from __future__ import annotations

import base64
import hashlib
import json
from urllib.parse import quote, quote_plus

import pytest

from mcpgateway import redaction
from mcpgateway.redaction import (
    MIN_LENGTH,
    Redactor,
    StreamRedactor,
    get_redactor,
    marker,
    register_secret_source,
)

SECRET = 'pa"ss\\word-Ünï-42x'


@pytest.fixture
def redactor() -> Redactor:
    return Redactor([SECRET])


@pytest.mark.parametrize("encode", [
    lambda v: v,
    lambda v: json.dumps(v)[1:-1],
    lambda v: json.dumps(v, ensure_ascii=False)[1:-1],
    lambda v: json.dumps(json.dumps(v)[1:-1])[1:-1],
    lambda v: quote(v, safe=""),
    lambda v: quote_plus(v),
    lambda v: base64.b64encode(v.encode()).decode(),
    lambda v: base64.urlsafe_b64encode(v.encode()).decode().rstrip("="),
    lambda v: v.encode().hex(),
], ids=["raw", "json", "json-unicode", "json-twice", "quote", "quote_plus", "base64", "base64url-unpadded", "hex"])
def test_it_redacts_each_encoded_form(redactor, encode):
    text = redactor.text(f"before {encode(SECRET)} after")

    assert text == f"before {marker(SECRET)} after"


@pytest.mark.parametrize("offset", [0, 1, 2])
def test_it_redacts_a_secret_inside_a_longer_base64_blob_at_every_alignment(redactor, offset):
    blob = base64.b64encode(b"p" * offset + b"prefix;" + SECRET.encode() + b";suffix").decode()

    text = redactor.text(blob)

    assert marker(SECRET) in text
    # What is left around the marker is only the encoding of the prefix, the suffix and at
    # most two of the secret's bytes at each edge.
    assert len(text) - len(marker(SECRET)) <= len(blob) - (len(SECRET.encode()) - 4) * 4 // 3


def test_it_walks_nested_values_and_keys(redactor):
    value = {"args": [{"k": SECRET}, (SECRET,)], SECRET: 1, "n": 5}

    assert redactor.redact(value) == {"args": [{"k": marker(SECRET)}, (marker(SECRET),)], marker(SECRET): 1, "n": 5}


def test_a_container_without_secrets_comes_back_as_an_equal_copy(redactor):
    inner = {"k": ["plain", 1, None, ("t", 2.5)], 7: "seven"}
    value = {"args": inner, "list": [inner]}

    redacted = redactor.redact(value)

    assert redacted == value
    assert redacted is not value and redacted["args"] is not inner and redacted["list"][0]["k"] is not inner["k"]
    assert isinstance(redacted["args"]["k"][3], tuple)


def test_one_secret_deep_in_a_large_container_is_still_found(redactor):
    value = {"rows": [{"i": i, "text": f"line {i}"} for i in range(200)]}
    value["rows"][137]["text"] = f"x {SECRET} y"
    token = "whsec_" + "Z9" * 12
    value["rows"][42][token] = "key"

    redacted = redactor.redact(value)

    assert redacted["rows"][137]["text"] == f"x {marker(SECRET)} y"
    assert marker(token) in redacted["rows"][42] and token not in json.dumps(redacted)
    assert redacted["rows"][0] == {"i": 0, "text": "line 0"}


def test_strings_that_only_join_into_a_secret_are_left_alone():
    # The whole-container scan joins strings with a newline: a secret holding one could appear
    # across two strings there. Each string alone holds no secret, so nothing may be replaced.
    secret = "first-half\nsecond-half"
    value = ["xx first-half", "second-half yy", {"first-half": "second-half"}]

    assert Redactor([secret]).redact(value) == value
    assert Redactor([secret]).redact([f"a {secret} b"]) == [f"a {marker(secret)} b"]


def test_it_leaves_values_shorter_than_the_minimum_alone():
    short = "x" * (MIN_LENGTH - 1)

    assert Redactor([short]).text(f"a {short} b") == f"a {short} b"


def test_it_redacts_api_tokens_by_shape_raw_and_base64():
    token = "adk_" + "A1b2_" * 8
    text = Redactor([]).text(f"{token} {base64.b64encode(token.encode()).decode()}")

    assert token not in text and "YWRrX" not in text and text.startswith(marker(token))


def test_it_marks_with_a_keyed_digest_not_a_plain_hash(settings):
    first = marker(SECRET)
    settings.SECRET_KEY = "another-instance-key-" + "z" * 40
    second = marker(SECRET)

    assert first != f"[REDACTED:{hashlib.sha256(SECRET.encode()).hexdigest()[:16]}]"
    assert first != second and len(first) == len("[REDACTED:]") + 16


def test_it_never_lets_a_secret_split_across_stream_pieces_through(redactor):
    text = f"one {SECRET} two adk_{'Z9' * 15} three {SECRET}"
    for size in (1, 3, 7, 16):
        stream = StreamRedactor(redactor)
        out = "".join(stream.feed(text[i:i + size]) for i in range(0, len(text), size)) + stream.flush()

        assert out == redactor.text(text), size


@pytest.mark.django_db
def test_it_redacts_what_a_registered_source_holds_after_invalidation():
    held: list[str] = []
    register_secret_source("tests.source", lambda: list(held), needs_db=False)
    try:
        held.append("fresh-secret-value-1")
        redaction.invalidate()

        assert get_redactor().text("x fresh-secret-value-1 y") == f"x {marker('fresh-secret-value-1')} y"
    finally:
        redaction._sources.pop("tests.source")
        redaction.invalidate()
