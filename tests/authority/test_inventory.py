"""The auditor selectors: inventory filters, sorting and pages, exports, the chain of custody,
the audit log's filters and keyset pages, the dashboard's counts and charts.

Certificates are made through the real services (``tests.bundles.conftest.issue``); their dates
and revocation are then set on the row, since that is what the filters read.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from audit import inventory
from audit.inventory import AuditFilters, InventoryFilters
from authority.audit import audit_record
from authority.models import AuditEvent, Certificate, CertificateAuthority, CertificateRequest, Crl
from bundles.services import bundle_download, bundle_render
from enrollment.models import Peer
from tests.bundles.conftest import issue

pytestmark = pytest.mark.django_db

ALPHA, BETA, GAMMA, DELTA = "alpha.example.com", "beta.example.com", "gamma.example.org", "delta.example.com"


@dataclass
class World:
    """Four certificates: alpha (alice, expiring in 10 days), beta (alice, revoked), gamma (mallory,
    expired), delta (mallory, valid for 100 days); issued on the 10th of January to April 2025."""

    now: datetime
    certificates: dict[str, Certificate]

    def serial(self, fqdn: str) -> str:
        return self.certificates[fqdn].serial


def at(year: int, month: int, day: int, hour: int = 12) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def build_world(owner: Any, other_user: Any, approver: Any) -> World:
    for fqdn, who in ((ALPHA, owner), (BETA, owner), (GAMMA, other_user), (DELTA, other_user)):
        issue(who, approver, fqdn)
    now = timezone.now()
    rows = {
        ALPHA: {"issued_at": at(2025, 1, 10), "not_after": now + timedelta(days=10)},
        BETA: {
            "issued_at": at(2025, 2, 10),
            "not_after": now + timedelta(days=200),
            "revoked_at": now - timedelta(hours=1),
            "revocation_reason": "keyCompromise",
            "revoked_by": "user:carol",
        },
        GAMMA: {"issued_at": at(2025, 3, 10), "not_after": now - timedelta(days=1)},
        DELTA: {"issued_at": at(2025, 4, 10), "not_after": now + timedelta(days=100)},
    }
    for fqdn, values in rows.items():
        assert Certificate.objects.filter(fqdn=fqdn).update(**values) == 1
    return World(now=now, certificates={c.fqdn: c for c in Certificate.objects.all()})


def bulk_certificates(ca: CertificateAuthority, owner: Any, approver: Any, n: int, *, prefix: str = "bulk") -> None:
    """``n`` issued peers with certificate rows, straight into the tables (fast; not real DER)."""
    now = timezone.now()
    requests = CertificateRequest.objects.bulk_create(
        CertificateRequest(
            ca=ca,
            fqdn=f"{prefix}{i}.example.com",
            kind="client",
            public_key_der=b"k",
            key_type="rsa-2048",
            validity_days=365,
            status="issued",
            requested_by=owner,
            approved_by=approver,
            queued_at=now,
        )
        for i in range(n)
    )
    Peer.objects.bulk_create(
        Peer(
            fqdn=r.fqdn,
            owner=owner,
            decision="approved",
            decided_by=approver,
            decided_at=now,
            certificate_request=r,
            csr_pem="x",
        )
        for r in requests
    )
    Certificate.objects.bulk_create(
        Certificate(
            request=r,
            ca=ca,
            serial=f"{prefix.encode().hex()}{i:08x}",
            fqdn=r.fqdn,
            der=b"x",
            fingerprint_sha256=hashlib.sha256(f"{prefix}-{i}".encode()).hexdigest(),
            not_before=now,
            not_after=now + timedelta(days=365 - i),
        )
        for i, r in enumerate(requests)
    )


@pytest.fixture
def world(ca: CertificateAuthority, owner: Any, other_user: Any, admin: Any) -> World:
    return build_world(owner, other_user, admin)


def fqdns(filters: InventoryFilters) -> list[str]:
    return [row.fqdn for row in inventory.inventory_iter(filters)]


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
    assert fqdns(InventoryFilters(q=inventory.serial_colons(serial))) == [BETA]  # as openssl prints it


def test_normalize_serial() -> None:
    assert inventory.normalize_serial("00:0A:FF") == "aff"
    assert inventory.normalize_serial(" 0 ") == "0"
    assert inventory.normalize_serial("client.example.com") is None
    assert inventory.normalize_serial("") is None
    assert inventory.serial_colons("aff") == "0A:FF"


@pytest.mark.parametrize(
    ("status", "expected"),
    [("valid", {ALPHA, DELTA}), ("expired", {GAMMA}), ("revoked", {BETA}), ("", {ALPHA, BETA, GAMMA, DELTA})],
)
def test_status_filter(world: World, status: str, expected: set[str]) -> None:
    assert set(fqdns(InventoryFilters(status=status))) == expected


def test_status_on_rows(world: World) -> None:
    statuses = {row.fqdn: row.status for row in inventory.inventory_iter(InventoryFilters())}

    assert statuses == {ALPHA: "valid", BETA: "revoked", GAMMA: "expired", DELTA: "valid"}


def test_a_revoked_certificate_stays_revoked_after_it_expires() -> None:
    now = timezone.now()
    assert inventory.certificate_status(revoked_at=now, not_after=now - timedelta(days=1), now=now) == "revoked"
    assert inventory.certificate_status(revoked_at=None, not_after=now, now=now) == "expired"


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
    rows = list(inventory.inventory_iter(InventoryFilters(sort="owner", direction="asc")))

    assert [row.owner for row in rows] == ["alice", "alice", "mallory", "mallory"]
    descending = [row.owner for row in inventory.inventory_iter(InventoryFilters(sort="owner", direction="desc"))]
    assert descending == ["mallory", "mallory", "alice", "alice"]


def test_pages(world: World) -> None:
    first = inventory.inventory_page(InventoryFilters(sort="fqdn", direction="asc"), page=1, per_page=3)
    second = inventory.inventory_page(InventoryFilters(sort="fqdn", direction="asc"), page=2, per_page=3)

    assert [r.fqdn for r in first.rows] == [ALPHA, BETA, DELTA]
    assert (first.count, first.count_capped, first.has_next, first.has_previous) == (4, False, True, False)
    assert (first.first_index, first.last_index, first.num_pages) == (1, 3, 2)
    assert [r.fqdn for r in second.rows] == [GAMMA]
    assert (second.has_next, second.has_previous, second.first_index, second.last_index) == (False, True, 4, 4)
    beyond = inventory.inventory_page(InventoryFilters(), page=9, per_page=3)
    assert beyond.rows == []
    assert not beyond.has_next


def test_the_count_is_capped(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inventory, "COUNT_CAP", 2)

    page = inventory.inventory_page(InventoryFilters(), per_page=3)

    assert (page.count, page.count_capped, page.num_pages, page.has_next) == (2, True, None, True)
    assert len(page.rows) == 3  # the cap bounds the count, not the pages


@pytest.mark.parametrize("sort", sorted(inventory.SORTS))
def test_a_page_of_fifty_takes_two_queries(
    ca: CertificateAuthority, owner: Any, admin: Any, django_assert_num_queries: Any, sort: str
) -> None:
    bulk_certificates(ca, owner, admin, 60)

    with django_assert_num_queries(2):  # the capped count, and the page with its owners
        page = inventory.inventory_page(InventoryFilters(status="valid", sort=sort))

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
        page = inventory.inventory_page(InventoryFilters(q="alice"))
    with django_assert_num_queries(3):  # nobody is called that: no owner arm at all
        inventory.inventory_page(InventoryFilters(q="bulk1"))

    assert len(page.rows) == 50
    assert page.count == 60


def test_an_owner_of_very_many_certificates_is_searched_by_subquery(
    ca: CertificateAuthority, owner: Any, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bulk_certificates(ca, owner, admin, 12)
    monkeypatch.setattr(inventory, "OWNED_LIST_LIMIT", 5)

    page = inventory.inventory_page(InventoryFilters(q="alice"))

    assert page.count == 12
    assert {row.owner for row in page.rows} == {"alice"}


@pytest.mark.parametrize("sort", sorted(inventory.SORTS))
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
    everything = [row.serial for row in inventory.inventory_iter(filters)]

    for cap in (1000, 3):  # the fenced sort (a known count) and the index walk (a capped count)
        monkeypatch.setattr(inventory, "COUNT_CAP", cap)
        paged = [row.serial for n in (1, 2, 3) for row in inventory.inventory_page(filters, page=n, per_page=5).rows]
        assert paged == everything, cap


def test_the_inventory_never_reads_the_der(world: World) -> None:
    sql = str(inventory.inventory_queryset(InventoryFilters(q="x")).query)

    assert '"der"' not in sql
    assert "csr_pem" not in sql


# --- exports ---------------------------------------------------------------------------------


def test_csv_export_matches_the_filter(world: World) -> None:
    text = "".join(inventory.export_csv(InventoryFilters(status="valid", sort="fqdn", direction="asc")))

    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["fqdn"] for r in rows] == [ALPHA, DELTA]
    assert list(rows[0]) == inventory.EXPORT_COLUMNS
    assert rows[0]["owner"] == "alice"
    assert rows[1]["owner"] == "mallory"
    assert rows[0]["serial"] == world.serial(ALPHA)
    assert rows[0]["status"] == "valid"


def test_json_export_is_one_array(world: World) -> None:
    text = "".join(inventory.export_json(InventoryFilters(status="revoked")))

    records = json.loads(text)
    assert [r["fqdn"] for r in records] == [BETA]
    assert records[0]["revocation_reason"] == "keyCompromise"
    assert records[0]["status"] == "revoked"
    assert datetime.fromisoformat(records[0]["revoked_at"]) < timezone.now()
    assert json.loads("".join(inventory.export_json(InventoryFilters(q="nothing-matches")))) == []


def test_exports_stream_in_pieces(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    bulk_certificates(ca, owner, admin, 1200)

    pieces = list(inventory.export_csv(InventoryFilters()))

    assert len(pieces) >= 3  # batched, not one big string
    assert len(list(csv.reader(io.StringIO("".join(pieces))))) == 1201
    assert len(json.loads("".join(inventory.export_json(InventoryFilters())))) == 1200


def test_csv_cells_cannot_become_formulas(ca: CertificateAuthority, admin: Any, django_user_model: Any) -> None:
    bulk_certificates(ca, django_user_model.objects.create_user("+cmd"), admin, 1)

    rows = list(csv.DictReader(io.StringIO("".join(inventory.export_csv(InventoryFilters())))))

    assert rows[0]["owner"] == "'+cmd"


# --- one certificate's chain of custody ------------------------------------------------------


def test_timeline_has_the_whole_chain_of_custody(
    ca: CertificateAuthority, owner: Any, admin: Any, second_admin: Any
) -> None:
    issue(admin, second_admin, "www.example.com", kind="server", networks=("10.1.1.0/24",), address="192.0.34.72")
    peer, _ = issue(owner, second_admin, "client.example.com", networks=("10.10.10.0/24",))
    assert bundle_render(peer_id=peer.pk).bundle is not None
    bundle_download(peer_id=peer.pk, user=owner, address="192.0.2.7", via="page")
    certificate = Certificate.objects.get(fqdn="client.example.com")
    revoked_at = timezone.now()
    Certificate.objects.filter(pk=certificate.pk).update(
        revoked_at=revoked_at, revocation_reason="keyCompromise", revoked_by="user:carol"
    )
    audit_record(
        "certificate.revoked",
        actor="user:carol",
        target=f"certificate:{certificate.serial}",
        reason="keyCompromise",
        peer=peer.pk,
    )
    Crl.objects.create(
        ca=ca, number=6, this_update=revoked_at - timedelta(hours=1), next_update=revoked_at, der=b"x", entries=0,
        trigger="schedule",
    )  # fmt: skip
    crl = Crl.objects.create(
        ca=ca, number=7, this_update=revoked_at + timedelta(seconds=2), next_update=revoked_at + timedelta(days=1),
        der=b"x", entries=1, trigger="revocation",
    )  # fmt: skip
    Crl.objects.create(
        ca=ca, number=8, this_update=revoked_at + timedelta(hours=1), next_update=revoked_at + timedelta(days=2),
        der=b"x", entries=1, trigger="schedule",
    )  # fmt: skip
    published = audit_record("crl.published", actor="signer", target=f"ca:{ca.pk}", number=7, entries=1)

    loaded = inventory.certificate_by_serial(certificate.serial.upper())
    assert loaded is not None
    timeline = inventory.certificate_timeline(loaded)

    kinds = [e.kind for e in timeline.entries if e.kind != "event"]
    assert kinds == ["registered", "approved", "requested", "issued", "download", "revoked", "crl"]
    by_kind = {e.kind: e for e in timeline.entries}
    assert by_kind["registered"].actor == "alice"
    assert by_kind["approved"].what == "approved by dave"
    assert by_kind["approved"].actor == "dave"
    assert by_kind["issued"].actor == "signer"
    assert certificate.serial in by_kind["issued"].what
    assert by_kind["download"].actor == "alice"
    assert "192.0.2.7" in by_kind["download"].detail
    assert "bundle v1 downloaded via peer page" in by_kind["download"].what
    assert by_kind["revoked"].actor == "carol"
    assert "key compromise" in by_kind["revoked"].what
    assert by_kind["crl"].what == "first listed on CRL #7"
    assert by_kind["crl"].seq == published.seq
    assert timeline.crl is not None
    assert timeline.crl.pk == crl.pk
    # every state change is paired with the audit event that recorded it
    assert not [e for e in timeline.entries if e.missing_event]
    seqs = {e.kind: e.seq for e in timeline.entries}
    actions = dict(AuditEvent.objects.filter(seq__in=[s for s in seqs.values() if s]).values_list("seq", "action"))
    assert actions[seqs["approved"]] == "peer.approved"
    assert actions[seqs["download"]] == "bundle.downloaded"
    assert actions[seqs["revoked"]] == "certificate.revoked"
    # the other events about this peer are there too, and no event is shown twice
    others = [e.what for e in timeline.entries if e.kind == "event"]
    assert "bundle.rendered" in others
    assert "certificate.intent" in others
    shown = [e.seq for e in timeline.entries if e.seq is not None]
    assert len(shown) == len(set(shown))
    # oldest first
    assert [e.at for e in timeline.entries] == sorted(e.at for e in timeline.entries)


def test_timeline_flags_a_state_change_without_its_audit_event(world: World) -> None:
    certificate = inventory.certificate_by_serial(world.serial(BETA))
    assert certificate is not None

    timeline = inventory.certificate_timeline(certificate)

    revoked = [e for e in timeline.entries if e.kind == "revoked"]
    assert len(revoked) == 1
    assert revoked[0].missing_event
    assert timeline.crl is None
    assert not [e for e in timeline.entries if e.missing_event and e.kind != "revoked"]


def test_timeline_queries_are_bounded(world: World, django_assert_max_num_queries: Any) -> None:
    with django_assert_max_num_queries(5):
        certificate = inventory.certificate_by_serial(world.serial(ALPHA))
        assert certificate is not None
        timeline = inventory.certificate_timeline(certificate)
        assert inventory.certificate_owner(certificate) == "alice"
    assert len(timeline.entries) >= 4


def test_certificate_by_serial_refuses_what_is_not_hex(world: World) -> None:
    assert inventory.certificate_by_serial("zz") is None
    assert inventory.certificate_by_serial("123") is None


# --- the audit log ---------------------------------------------------------------------------


def _actions(filters: AuditFilters) -> list[str]:
    return list(inventory.audit_queryset(filters).order_by("seq").values_list("action", flat=True))


def test_audit_filters(world: World) -> None:
    peer = Peer.objects.get(fqdn=ALPHA)

    assert _actions(AuditFilters(action="peer.approved")) == ["peer.approved"] * 4
    assert set(_actions(AuditFilters(action="peer.*"))) == {"peer.registered", "peer.approved"}
    assert set(_actions(AuditFilters(actor="carol"))) == {"peer.approved", "certificate.requested"}
    assert _actions(AuditFilters(actor="user:carol")) == _actions(AuditFilters(actor="carol"))
    audit_record("peer.registered", actor="est:carol", target="peer:999")  # carol, through EST
    assert _actions(AuditFilters(actor="carol")).count("peer.registered") == 1
    assert _actions(AuditFilters(target=f"peer:{peer.pk}")) == ["peer.registered", "peer.approved"]
    today = timezone.now().date()
    assert len(_actions(AuditFilters(date_from=today, date_to=today))) == AuditEvent.objects.count()
    assert _actions(AuditFilters(date_from=today + timedelta(days=1))) == []
    assert _actions(AuditFilters(date_to=today - timedelta(days=1))) == []


def test_audit_pages_are_keyset_pages_newest_first(world: World) -> None:
    total = AuditEvent.objects.count()
    assert total > 7
    newest = list(AuditEvent.objects.order_by("-seq").values_list("seq", flat=True))

    first = inventory.audit_page(AuditFilters(), per_page=3)
    assert [e.seq for e in first.events] == newest[:3]
    assert first.newer is None
    assert first.older == newest[2]
    second = inventory.audit_page(AuditFilters(), before=first.older, per_page=3)
    assert [e.seq for e in second.events] == newest[3:6]
    assert second.newer == newest[3]
    assert second.older == newest[5]
    back = inventory.audit_page(AuditFilters(), after=second.newer, per_page=3)
    assert [e.seq for e in back.events] == newest[:3]
    assert back.newer is None
    assert back.older == newest[2]
    last = inventory.audit_page(AuditFilters(), before=newest[-2], per_page=3)
    assert [e.seq for e in last.events] == newest[-1:]
    assert last.older is None


# --- the dashboard ---------------------------------------------------------------------------


def test_counts(world: World) -> None:
    counts = inventory.certificate_counts()

    assert counts == inventory.Counts(issued=4, valid=2, revoked=1, expired=1, expiring_30=1)


def test_issuance_per_week(world: World) -> None:
    weeks = inventory.issuance_per_week(weeks=20, now=at(2025, 4, 16))  # a Wednesday

    assert len(weeks) == 20
    assert weeks[-1][0] == date(2025, 4, 14)  # this week's Monday
    assert all(week.weekday() == 0 for week, _n in weeks)
    counted = {week: n for week, n in weeks if n}
    assert counted == {date(2025, 1, 6): 1, date(2025, 2, 10): 1, date(2025, 3, 10): 1, date(2025, 4, 7): 1}


def test_expiries_per_month_leave_out_revoked_and_past(world: World) -> None:
    months = inventory.expiries_per_month(months=12, now=world.now)

    assert len(months) == 12
    assert months[0][0] == world.now.date().replace(day=1)
    # alpha and delta; beta is revoked; gamma (expired yesterday) only if that is still this month
    first = world.now.date().replace(day=1)
    gamma_counts = Certificate.objects.get(fqdn=GAMMA).not_after.date() >= first
    assert sum(n for _m, n in months) == 2 + gamma_counts
    month_of = {m: n for m, n in months}
    for fqdn in (ALPHA, DELTA):
        not_after = Certificate.objects.get(fqdn=fqdn).not_after
        assert month_of[not_after.date().replace(day=1)] >= 1


def test_bar_chart_scales_to_the_tallest_bar() -> None:
    chart = inventory.bar_chart("t", [("a", "A", 0), ("b", "B", 5), ("c", "C", 10)])

    heights = [bar.height for bar in chart.bars]
    assert heights[0] == 0
    assert heights[2] == chart.plot_bottom - chart.plot_top
    assert heights[1] == heights[2] / 2
    assert all(bar.y + bar.height == pytest.approx(chart.plot_bottom) for bar in chart.bars)
    assert chart.max_value == 10
    assert chart.total == 15
    assert all(0 <= bar.x and bar.x + bar.width <= chart.width for bar in chart.bars)
    empty = inventory.bar_chart("t", [("a", "A", 0)])
    assert empty.bars[0].height == 0
    assert empty.max_value == 0


@pytest.mark.parametrize("cap", [1000, 2])  # few matches (a fenced sort) and many (a walk along the order)
@pytest.mark.parametrize("by_date", [False, True])
def test_audit_pages_cover_every_match_once_in_order(
    world: World, monkeypatch: pytest.MonkeyPatch, cap: int, by_date: bool
) -> None:
    monkeypatch.setattr(inventory, "COUNT_CAP", cap)
    today = timezone.now().date()
    filters = AuditFilters(action="certificate.*", date_from=today if by_date else None)
    expected = list(
        AuditEvent.objects.filter(action__startswith="certificate.").order_by("-seq").values_list("seq", flat=True)
    )
    assert len(expected) > 8

    pages, before = [], None
    while True:
        page = inventory.audit_page(filters, before=before, per_page=3)
        pages.append(page)
        if page.older is None:
            break
        before = page.older

    assert [e.seq for p in pages for e in p.events] == expected
    assert pages[0].newer is None
    back = inventory.audit_page(filters, after=pages[1].newer, per_page=3)
    assert [e.seq for e in back.events] == [e.seq for e in pages[0].events]


def test_a_certificate_without_a_peer_belongs_to_whoever_requested_it(
    ca: CertificateAuthority, owner: Any, admin: Any, second_admin: Any
) -> None:
    from authority.services import certificate_issue, certificate_request_create
    from tests.bundles.conftest import ANY_CSR

    request = certificate_request_create(
        fqdn="cli.example.com", kind="client", csr_pem=ANY_CSR, validity_days=30, requested_by=owner,
        approved_by=second_admin, actor="cli:root", enqueue=False,
    )  # fmt: skip
    assert certificate_issue(request_id=request.pk) is not None
    issue(other := owner, admin, "peer.example.com")
    assert other == owner

    rows = list(inventory.inventory_iter(InventoryFilters(q="alice", sort="fqdn", direction="asc")))
    assert [(r.fqdn, r.owner, r.peer_id is None) for r in rows] == [
        ("cli.example.com", "alice", True),
        ("peer.example.com", "alice", False),
    ]
    certificate = inventory.certificate_by_serial(Certificate.objects.get(fqdn="cli.example.com").serial)
    assert certificate is not None
    assert inventory.certificate_owner(certificate) == "alice"
    timeline = inventory.certificate_timeline(certificate)
    kinds = [e.kind for e in timeline.entries if e.kind != "event"]
    assert kinds == ["requested", "approved", "issued"]
    approved = next(e for e in timeline.entries if e.kind == "approved")
    assert approved.what == "approved by dave"
    assert not approved.missing_event  # no peer, so no peer.approved event is expected
    assert next(e for e in timeline.entries if e.kind == "requested").actor == "cli:root"
