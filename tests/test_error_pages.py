"""Django's own refusals as pages in the site's style (issue 10, item 12): a form refused by the CSRF
check, and a POST-only address opened with GET (a reload of /audit/log/verify/ showed Chromium's
blank "HTTP ERROR 405")."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.test import Client

from tests.conftest import login

pytestmark = pytest.mark.django_db

BROWSER = {"HTTP_ACCEPT": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_a_form_refused_by_the_csrf_check_gets_a_styled_page(owner: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    login(client, owner)

    response = client.post("/peers/new/", {"fqdn": "laptop.example.com"}, HTTP_REFERER="http://testserver/peers/new/")

    page = html.unescape(response.content.decode())
    assert response.status_code == 403
    assert response.templates[0].name == "csrf_failure.html"
    assert "css/portal.css" in page  # the site's page, with its menu
    assert "The form was not sent" in page
    assert "Nothing was changed" in page
    assert 'href="http://testserver/peers/new/" id="go-back"' in page


def test_the_csrf_page_never_links_back_off_site(client: Client) -> None:
    client = Client(enforce_csrf_checks=True)

    response = client.post("/login/", {"username": "x"}, HTTP_REFERER="https://evil.example/")

    assert response.status_code == 403
    assert "evil.example" not in response.content.decode()
    assert 'href="/" id="go-back"' in response.content.decode()


@pytest.mark.parametrize("persona", ["auditor", "admin"])
def test_opening_the_verify_button_address_gets_a_page_with_the_way_back(
    client: Client, persona: str, request: Any
) -> None:
    login(client, request.getfixturevalue(persona))

    response = client.get("/audit/log/verify/", **BROWSER)

    page = html.unescape(response.content.decode())
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.templates[0].name == "405.html"
    assert "This address is not a page to open" in page
    assert "It takes <code>POST</code> only" in page
    assert "as a reload, the history or a bookmark does" in page
    assert 'href="/audit/log/" id="go-back"' in page


def test_the_way_back_is_the_page_the_person_came_from(client: Client, owner: Any) -> None:
    login(client, owner)

    response = client.get("/logout/", HTTP_REFERER="http://testserver/peers/", **BROWSER)

    assert response.status_code == 405
    assert 'href="http://testserver/peers/" id="go-back"' in response.content.decode()


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/audit/log/verify/", {}),  # not a browser asking for a page
        ("/ca.pem", {"HTTP_ACCEPT": "*/*"}),
        ("/api/v1/peers/1/approve", BROWSER),  # the API keeps its JSON
    ],
)
def test_programs_keep_the_plain_answer(client: Client, auditor: Any, path: str, headers: dict[str, str]) -> None:
    login(client, auditor)

    response = client.post(path, **headers) if path == "/ca.pem" else client.get(path, **headers)

    assert response.status_code == 405
    assert "This address is not a page to open" not in response.content.decode()
