"""The site policy: policy_update, the policy page and the one-admin self-approval rule (T29)."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from authority.models import AuditEvent
from enrollment.models import SitePolicy
from enrollment.selectors import policy_get, self_approval_allowed
from enrollment.services import EnrollmentError, policy_update
from tests.conftest import login

pytestmark = pytest.mark.django_db

URL = "/peers/policy/"


def _update(actor: Any, **overrides: Any) -> SitePolicy:
    options: dict[str, Any] = {"allowed_domains": [], "default_validity_days": 365, "allow_self_approval": False}
    options.update(overrides)
    return policy_update(actor=actor, **options)


# --- policy_update ------------------------------------------------------------------------------


def test_the_default_policy_allows_any_domain_for_a_year(db: Any) -> None:
    policy = policy_get()

    assert (policy.pk, policy.allowed_domains, policy.default_validity_days) == (1, [], 365)
    assert policy.allow_self_approval is False
    assert policy.domain_allowed("anything.example.net")


def test_it_normalises_and_stores_the_domains(admin: Any) -> None:
    policy = _update(admin, allowed_domains=[" Example.COM ", ".corp.example.net", "", "example.com"])

    assert policy.allowed_domains == ["corp.example.net", "example.com"]
    assert policy.updated_by == admin
    assert SitePolicy.objects.get(pk=1).allowed_domains == ["corp.example.net", "example.com"]
    assert policy.domain_allowed("example.com")
    assert policy.domain_allowed("laptop.example.com")
    assert policy.domain_allowed("a.b.corp.example.net")
    assert not policy.domain_allowed("badexample.com")
    assert not policy.domain_allowed("example.com.evil.org")


@pytest.mark.parametrize(
    ("domains", "message"),
    [
        (["exa mple.com"], "characters that are not allowed"),
        (["example.com;rm"], "characters that are not allowed"),
        (["bücher.example"], "non-ASCII"),
        (["localhost"], "at least two labels"),
        (["example..com"], "empty label"),
        (["-bad.example.com"], "must not start or end with a hyphen"),
    ],
)
def test_it_refuses_a_bad_domain(admin: Any, domains: list[str], message: str) -> None:
    _update(admin, allowed_domains=["kept.example.com"])
    events = AuditEvent.objects.count()

    with pytest.raises(EnrollmentError, match=message) as refused:
        _update(admin, allowed_domains=["fine.example.com", *domains])

    assert (refused.value.field, refused.value.status) == ("allowed_domains", 400)
    assert policy_get().allowed_domains == ["kept.example.com"]
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize("days", [0, 826, -1, 3650])
def test_it_refuses_a_validity_out_of_range(admin: Any, days: int) -> None:
    with pytest.raises(EnrollmentError, match="between 1 and 825 days") as refused:
        _update(admin, default_validity_days=days)

    assert refused.value.field == "default_validity_days"
    assert policy_get().default_validity_days == 365
    assert not AuditEvent.objects.filter(action="policy.updated").exists()


@pytest.mark.parametrize("days", [1, 825])
def test_it_accepts_the_validity_limits(admin: Any, days: int) -> None:
    assert _update(admin, default_validity_days=days).default_validity_days == days


def test_it_audits_the_change_with_before_and_after(admin: Any) -> None:
    _update(admin, allowed_domains=["example.com"], default_validity_days=90)

    _update(admin, allowed_domains=["corp.example.net"], default_validity_days=30, allow_self_approval=True)

    first, second = AuditEvent.objects.filter(action="policy.updated")
    assert (second.actor, second.target) == ("user:carol", "policy")
    assert second.data == {
        "before": {"allowed_domains": ["example.com"], "default_validity_days": 90, "allow_self_approval": False},
        "after": {"allowed_domains": ["corp.example.net"], "default_validity_days": 30, "allow_self_approval": True},
    }
    assert first.data["before"] == {"allowed_domains": [], "default_validity_days": 365, "allow_self_approval": False}


# --- self-approval --------------------------------------------------------------------------------


def test_self_approval_is_off_unless_the_policy_allows_it(admin: Any) -> None:
    assert self_approval_allowed(policy_get()) is False


def test_self_approval_needs_exactly_one_active_admin(admin: Any, django_user_model: Any) -> None:
    policy = _update(admin, allow_self_approval=True)
    assert self_approval_allowed(policy) is True

    second = django_user_model.objects.create_user("dave", "dave@example.org", "correct horse battery")
    second.groups.add(Group.objects.get(name="ca-admin"))
    assert self_approval_allowed(policy) is False

    second.is_active = False
    second.save()
    assert self_approval_allowed(policy) is True

    root = django_user_model.objects.create_superuser("root", "root@example.org", "correct horse battery")
    assert self_approval_allowed(policy) is False  # superusers count as CA admins

    root.groups.add(Group.objects.get(name="ca-admin"))
    admin.is_active = False
    admin.save()
    assert self_approval_allowed(policy) is True  # one admin, counted once although it matches twice


def test_self_approval_is_off_without_any_admin(owner: Any) -> None:
    policy = _update(owner, allow_self_approval=True)

    assert self_approval_allowed(policy) is False


def test_roaming_users_and_auditors_do_not_count_as_admins(admin: Any, owner: Any, auditor: Any) -> None:
    assert self_approval_allowed(_update(admin, allow_self_approval=True)) is True


# --- the page -------------------------------------------------------------------------------------


def test_the_page_shows_the_current_policy(client: Client, admin: Any, second_admin: Any) -> None:
    _update(second_admin, allowed_domains=["example.com", "corp.example.net"], default_validity_days=90)
    login(client, admin)

    response = client.get(URL)

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    assert "corp.example.net\nexample.com</textarea>" in page
    assert 'name="default_validity_days" value="90"' in page
    assert 'name="allow_self_approval"' in page
    assert "checked" not in page
    assert "by dave" in page


def test_the_page_saves_the_policy(client: Client, admin: Any) -> None:
    login(client, admin)

    response = client.post(
        URL,
        {"allowed_domains": "corp.example.net\r\n\r\n Example.com \r\n", "default_validity_days": "30",
         "allow_self_approval": "on"},
    )  # fmt: skip

    assert response.status_code == 302
    assert response["Location"] == URL
    policy = policy_get()
    assert (policy.allowed_domains, policy.default_validity_days) == (["corp.example.net", "example.com"], 30)
    assert policy.allow_self_approval is True
    assert policy.updated_by == admin
    assert AuditEvent.objects.get(action="policy.updated").actor == "user:carol"
    page = client.get(URL).content.decode()
    assert "Site policy saved." in page
    assert "checked" in page


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"default_validity_days": "0"}, "default_validity_days", "Ensure this value is greater than or equal to 1."),
        ({"default_validity_days": "826"}, "default_validity_days", "Ensure this value is less than or equal to 825."),
        ({"default_validity_days": "many"}, "default_validity_days", "Enter a whole number."),
        ({"default_validity_days": ""}, "default_validity_days", "This field is required."),
        ({"allowed_domains": "example.com\nexa mple.com"}, "allowed_domains", "characters that are not allowed: ' '"),
        ({"allowed_domains": "<b>x</b>.example.com"}, "allowed_domains", "characters that are not allowed"),
    ],
)
def test_the_page_refuses_bad_input_on_the_field(
    client: Client, admin: Any, data: dict[str, str], field: str, message: str
) -> None:
    login(client, admin)
    form = {"allowed_domains": "", "default_validity_days": "365", **data}

    response = client.post(URL, form)

    assert response.status_code == 200
    errors = response.context["form"].errors
    assert any(message in error for error in errors[field]), errors
    assert message in html.unescape(response.content.decode())
    assert "<b>x</b>" not in response.content.decode()
    assert not AuditEvent.objects.filter(action="policy.updated").exists()
    assert policy_get().allowed_domains == []


def test_the_page_accepts_only_get_and_post(client: Client, admin: Any) -> None:
    login(client, admin)

    assert client.put(URL).status_code == 405
    assert client.delete(URL).status_code == 405
