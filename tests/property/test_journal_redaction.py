"""Whatever a JSON body looks like, a secret named by its field never reaches the journal."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from simkit.journal import redact_body

SECRET = "s3cr3t-VALUE-9f2"
_NAMES = ("password", "accessKey", "client_secret", "refresh-token", "apiKey", "passphrase")


@st.composite
def secret_names(draw: st.DrawFn) -> str:
    """A secret field name as callers spell it: any case, `_` or `-` anywhere."""
    name = draw(st.sampled_from(_NAMES))
    letters = [draw(st.sampled_from([c.lower(), c.upper()])) for c in name]
    cut = draw(st.integers(0, len(letters)))
    return "".join(letters[:cut]) + draw(st.sampled_from(["", "_", "-"])) + "".join(letters[cut:])


# Ordinary member names: without k, p, s and t no name can spell key, pass, secret or token.
ordinary_names = st.text(alphabet="abcdefghijlmnoqruvwxyzABCDEFGHIJLMNOQRUVWXYZ_-", max_size=6)
plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(ordinary_names, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def bodies_with_a_secret(draw: st.DrawFn) -> Any:
    """A JSON document with one secret field buried at some depth among ordinary members."""
    body: Any = {draw(secret_names()): SECRET}
    for _ in range(draw(st.integers(0, 3))):
        wrapper = draw(st.dictionaries(st.text(max_size=6), plain, max_size=2))
        key = draw(st.text(min_size=1, max_size=6))
        wrapper.pop(key, None)
        body = {**wrapper, key: body} if draw(st.booleans()) else [body, *wrapper.values()]
    return body


PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, print_blob=True)


@PROPERTY_SETTINGS
@given(body=bodies_with_a_secret(), escape=st.booleans())
def test_a_named_secret_is_never_stored(body: Any, escape: bool) -> None:
    text = json.dumps(body, ensure_ascii=escape)
    if escape:  # spell the field names with \\u escapes, as a hostile client may
        text = text.replace('"p', '"\\u0070').replace('"a', '"\\u0061')
    assert SECRET not in redact_body(text.encode(), "application/json")


@PROPERTY_SETTINGS
@given(body=plain)
def test_a_body_without_secrets_keeps_its_content(body: Any) -> None:
    text = json.dumps(body)
    assert json.loads(redact_body(text.encode(), "application/json")) == json.loads(text)
