"""The inventory selectors: search, filters, sorting and pages, and what they read."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from django.utils import timezone

from audit import selectors
from audit.selectors import InventoryFilters
from authority.models import CertificateAuthority
from tests.audit.conftest import ALPHA, BETA, DELTA, GAMMA, World, bulk_certificates

pytestmark = pytest.mark.django_db


def fqdns(filters: InventoryFilters) -> list[str]:
    return [row.fqdn for row in selectors.inventory_iter(filters)]


# --- search and filters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("alp", {ALPHA}),
        ("EXAMPLE.ORG", {GAMMA}),
        ("example", {ALPHA, BETA, GAMMA, DELTA}),
        ("mallory", {GAMMA, DELTA}),  # the owner's username
        ("Alice", {ALPHA, BETA}),  # case-insensitive
        ("nobody-has-this", set()),
    ],
)
def test_search_by_fqdn_and_owner(world: World, q: str, expected: set[str]) -> None:
    assert set(fqdns(InventoryFilters(q=q))) == expected


def test_search_by_serial_prefix_with_colons_and_upper_case(world: World) -> None:
    serial = world.serial(BETA)

    assert fqdns(InventoryFilters(q=serial)) == [BETA]
    assert BETA in fqdns(InventoryFilters(q=serial[:10].upper()))
    assert fqdns(InventoryFilters(q=selectors.serial_colons(serial))) == [BETA]  # as openssl prints it


def test_normalize_serial() -> None:
    assert selectors.normalize_serial("00:0A:FF") == "aff"
    assert selectors.normalize_serial(" 0 ") == "0"
    assert selectors.normalize_serial("client.example.com") is None
    assert selectors.normalize_serial("") is None
    assert selectors.serial_colons("aff") == "0A:FF"


@pytest.mark.parametrize(
    ("status", "expected"),
    [("valid", {ALPHA, DELTA}), ("expired", {GAMMA}), ("revoked", {BETA}), ("", {ALPHA, BETA, GAMMA, DELTA})],
)
def test_status_filter(world: World, status: str, expected: set[str]) -> None:
    assert set(fqdns(InventoryFilters(status=status))) == expected


def test_status_on_rows(world: World) -> None:
    statuses = {row.fqdn: row.status for row in selectors.inventory_iter(InventoryFilters())}

    assert statuses == {ALPHA: "valid", BETA: "revoked", GAMMA: "expired", DELTA: "valid"}


def test_a_revoked_certificate_stays_revoked_after_it_expires() -> None:
    now = timezone.now()
    assert selectors.certificate_status(revoked_at=now, not_after=now - timedelta(days=1), now=now) == "revoked"
    assert selectors.certificate_status(revoked_at=None, not_after=now, now=now) == "expired"


@pytest.mark.parametrize(
    ("days", "expected"),
    [(0, set()), (30, {ALPHA}), (150, {ALPHA, DELTA}), (365, {ALPHA, DELTA})],  # never beta (revoked), gamma
)
def test_expiring_within(world: World, days: int, expected: set[str]) -> None:
    assert set(fqdns(InventoryFilters(expiring_within=days))) == expected


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (date(2025, 2, 1), date(2025, 3, 31), {BETA, GAMMA}),
        (date(2025, 3, 10), date(2025, 3, 10), {GAMMA}),  # both ends are whole days, inclusive
        (date(2025, 3, 11), None, {DELTA}),
        (None, date(2025, 1, 10), {ALPHA}),
        (date(2026, 1, 1), None, set()),
    ],
)
def test_issued_between(world: World, start: date | None, end: date | None, expected: set[str]) -> None:
    assert set(fqdns(InventoryFilters(issued_from=start, issued_to=end))) == expected


def test_filters_combine(world: World) -> None:
    assert fqdns(InventoryFilters(q="mallory", status="valid")) == [DELTA]
    assert fqdns(InventoryFilters(q="alice", issued_from=date(2025, 2, 1))) == [BETA]


# --- sorting and pages -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sort", "direction", "expected"),
    [
        ("issued", "desc", [DELTA, GAMMA, BETA, ALPHA]),
        ("issued", "asc", [ALPHA, BETA, GAMMA, DELTA]),
        ("expires", "asc", [GAMMA, ALPHA, DELTA, BETA]),
        ("expires", "desc", [BETA, DELTA, ALPHA, GAMMA]),
        ("fqdn", "asc", [ALPHA, BETA, DELTA, GAMMA]),
        ("fqdn", "desc", [GAMMA, DELTA, BETA, ALPHA]),
    ],
)
def test_sort(world: World, sort: str, direction: str, expected: list[str]) -> None:
    assert fqdns(InventoryFilters(sort=sort, direction=direction)) == expected


def test_sort_by_owner_then_newest_first(world: World) -> None:
    rows = list(selectors.inventory_iter(InventoryFilters(sort="owner", direction="asc")))

    assert [row.owner for row in rows] == ["alice", "alice", "mallory", "mallory"]
    descending = [row.owner for row in selectors.inventory_iter(InventoryFilters(sort="owner", direction="desc"))]
    assert descending == ["mallory", "mallory", "alice", "alice"]


def test_pages(world: World) -> None:
    first = selectors.inventory_page(InventoryFilters(sort="fqdn", direction="asc"), page=1, per_page=3)
    second = selectors.inventory_page(InventoryFilters(sort="fqdn", direction="asc"), page=2, per_page=3)

    assert [r.fqdn for r in first.rows] == [ALPHA, BETA, DELTA]
    assert (first.count, first.count_capped, first.has_next, first.has_previous) == (4, False, True, False)
    assert (first.first_index, first.last_index, first.num_pages) == (1, 3, 2)
    assert [r.fqdn for r in second.rows] == [GAMMA]
    assert (second.has_next, second.has_previous, second.first_index, second.last_index) == (False, True, 4, 4)
    beyond = selectors.inventory_page(InventoryFilters(), page=9, per_page=3)
    assert beyond.rows == []
    assert not beyond.has_next


def test_the_count_is_capped(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selectors, "COUNT_CAP", 2)

    page = selectors.inventory_page(InventoryFilters(), per_page=3)

    assert (page.count, page.count_capped, page.num_pages, page.has_next) == (2, True, None, True)
    assert len(page.rows) == 3  # the cap bounds the count, not the pages


@pytest.mark.parametrize("sort", sorted(selectors.SORTS))
def test_a_page_of_fifty_takes_two_queries(
    ca: CertificateAuthority, owner: Any, admin: Any, django_assert_num_queries: Any, sort: str
) -> None:
    bulk_certificates(ca, owner, admin, 60)

    with django_assert_num_queries(2):  # the capped count, and the page with its owners
        page = selectors.inventory_page(InventoryFilters(status="valid", sort=sort))

    assert len(page.rows) == 50
    assert page.has_next
    assert page.count == 60
    assert {row.owner for row in page.rows} == {"alice"}
    assert all(row.peer_id for row in page.rows)


def test_a_search_for_an_owner_adds_three_small_queries(
    ca: CertificateAuthority, owner: Any, admin: Any, django_assert_num_queries: Any
) -> None:
    bulk_certificates(ca, owner, admin, 60)

    with django_assert_num_queries(5):  # the user, their requests (via peers, and without), count, page
        page = selectors.inventory_page(InventoryFilters(q="alice"))
    with django_assert_num_queries(3):  # nobody is called that: no owner arm at all
        selectors.inventory_page(InventoryFilters(q="bulk1"))

    assert len(page.rows) == 50
    assert page.count == 60


def test_an_owner_of_very_many_certificates_is_searched_by_subquery(
    ca: CertificateAuthority, owner: Any, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bulk_certificates(ca, owner, admin, 12)
    monkeypatch.setattr(selectors, "OWNED_LIST_LIMIT", 5)

    page = selectors.inventory_page(InventoryFilters(q="alice"))

    assert page.count == 12
    assert {row.owner for row in page.rows} == {"alice"}


@pytest.mark.parametrize("sort", sorted(selectors.SORTS))
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_pages_agree_with_the_full_order_capped_or_not(
    ca: CertificateAuthority,
    owner: Any,
    other_user: Any,
    admin: Any,
    monkeypatch: pytest.MonkeyPatch,
    sort: str,
    direction: str,
) -> None:
    bulk_certificates(ca, owner, admin, 7, prefix="a")
    bulk_certificates(ca, other_user, admin, 6, prefix="b")
    filters = InventoryFilters(sort=sort, direction=direction)
    everything = [row.serial for row in selectors.inventory_iter(filters)]

    for cap in (1000, 3):  # the fenced sort (a known count) and the index walk (a capped count)
        monkeypatch.setattr(selectors, "COUNT_CAP", cap)
        paged = [row.serial for n in (1, 2, 3) for row in selectors.inventory_page(filters, page=n, per_page=5).rows]
        assert paged == everything, cap


def test_the_inventory_never_reads_the_der(world: World) -> None:
    sql = str(selectors.inventory_queryset(InventoryFilters(q="x")).query)

    assert '"der"' not in sql
    assert "csr_pem" not in sql
