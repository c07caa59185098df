"""The EGM screen shows its QR's url as a link beside the image (with a copy button that only
a page running its script shows), follows the QR when it rotates, and carries no inline code
under its Content-Security-Policy."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from simkit.clock import ManualClock, parse_instant
from tests.conftest import CmsFactory

pytestmark = pytest.mark.db

LINK = re.compile(r'<a id="qr-url" href="([^"]*)"[^>]*>([^<]*)</a>')


@pytest.fixture
def app(make_cms: CmsFactory) -> Flask:
    return make_cms(with_trustly=True)


def _status(client: FlaskClient) -> dict[str, Any]:
    body: dict[str, Any] = client.get("/egm/EGM-001/status.json").get_json()
    return body


def _link(client: FlaskClient) -> tuple[str, str]:
    """The href and the text of the page's QR link."""
    page = client.get("/egm/EGM-001")
    assert page.status_code == 200
    found = LINK.search(page.get_data(as_text=True))
    assert found, "the EGM screen shows no QR link"
    return html.unescape(found[1]), html.unescape(found[2]).strip()


def test_the_screen_shows_the_current_qr_url_as_a_link_and_the_new_one_after_rotation(
        app: Flask, clock: ManualClock) -> None:
    client = app.test_client()
    href, text = _link(client)
    first = _status(client)["url"]
    assert first and href == text == first
    clock.advance(_seconds_to_rotation(client) + 1)
    href, text = _link(client)
    second = _status(client)["url"]
    assert second != first
    assert href == text == second


def _seconds_to_rotation(client: FlaskClient) -> float:
    body = _status(client)
    return (parse_instant(body["rotatesAt"]) - parse_instant(body["now"])).total_seconds()


def test_the_copy_button_is_left_to_the_script_so_without_it_the_link_stands_alone(
        app: Flask) -> None:
    client = app.test_client()
    page = client.get("/egm/EGM-001").get_data(as_text=True)
    assert re.search(r'<button type="button" id="copy-url" class="hidden"', page)
    script = re.search(r'<script src="([^"]+)"', page)
    assert script and script[1] == "/egm/_assets/egm_screen.js"
    served = client.get(script[1])
    assert served.status_code == 200 and "javascript" in str(served.mimetype)
    code = served.get_data(as_text=True)
    assert "clipboard.writeText" in code and 'copy.classList.remove("hidden")' in code


def test_the_screen_runs_no_inline_code_and_says_so_in_its_policy(app: Flask) -> None:
    client = app.test_client()
    for path, status in (("/egm/EGM-001", 200), ("/egm/EGM-404", 404)):
        response = client.get(path)
        assert response.status_code == status
        page = response.get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\ssrc=)", page), "an inline script"
        assert "<style" not in page and not re.search(r"\sstyle=", page), "an inline style"
        assert not re.search(r"\son[a-z]+=", page), "an inline event handler"
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy
        assert "unsafe-inline" not in policy
    css = client.get("/egm/_assets/egm_screen.css")
    assert css.status_code == 200 and ".qr-link" in css.get_data(as_text=True)
