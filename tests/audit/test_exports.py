"""The inventory exports: CSV and JSON, streamed, with formula cells neutralised."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any

import pytest
from django.utils import timezone

from audit import exports
from audit.selectors import InventoryFilters
from authority.models import CertificateAuthority
from tests.audit.conftest import ALPHA, BETA, DELTA, World, bulk_certificates

pytestmark = pytest.mark.django_db


def test_csv_export_matches_the_filter(world: World) -> None:
    text = "".join(exports.export_csv(InventoryFilters(status="valid", sort="fqdn", direction="asc")))

    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["fqdn"] for r in rows] == [ALPHA, DELTA]
    assert list(rows[0]) == exports.EXPORT_COLUMNS
    assert rows[0]["owner"] == "alice"
    assert rows[1]["owner"] == "mallory"
    assert rows[0]["serial"] == world.serial(ALPHA)
    assert rows[0]["status"] == "valid"


def test_json_export_is_one_array(world: World) -> None:
    text = "".join(exports.export_json(InventoryFilters(status="revoked")))

    records = json.loads(text)
    assert [r["fqdn"] for r in records] == [BETA]
    assert records[0]["revocation_reason"] == "keyCompromise"
    assert records[0]["status"] == "revoked"
    assert datetime.fromisoformat(records[0]["revoked_at"]) < timezone.now()
    assert json.loads("".join(exports.export_json(InventoryFilters(q="nothing-matches")))) == []


def test_exports_stream_in_pieces(ca: CertificateAuthority, owner: Any, admin: Any) -> None:
    bulk_certificates(ca, owner, admin, 1200)

    pieces = list(exports.export_csv(InventoryFilters()))

    assert len(pieces) >= 3  # batched, not one big string
    assert len(list(csv.reader(io.StringIO("".join(pieces))))) == 1201
    assert len(json.loads("".join(exports.export_json(InventoryFilters())))) == 1200


def test_csv_cells_cannot_become_formulas(ca: CertificateAuthority, admin: Any, django_user_model: Any) -> None:
    bulk_certificates(ca, django_user_model.objects.create_user("+cmd"), admin, 1)

    rows = list(csv.DictReader(io.StringIO("".join(exports.export_csv(InventoryFilters())))))

    assert rows[0]["owner"] == "'+cmd"
