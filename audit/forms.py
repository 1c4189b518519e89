"""The filter forms of the auditor pages: what they accept becomes the selectors' filters.

Bad values never fail a page: the form shows what is wrong (the exports answer 400 with them).
"""

from __future__ import annotations

from typing import Any

from django import forms

from audit.auditlog import AuditFilters
from audit.selectors import InventoryFilters

MAX_DAYS = 36500


class InventoryFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=160, strip=True, label="Search")
    status = forms.ChoiceField(
        required=False,
        choices=[("", "any"), ("valid", "valid"), ("expired", "expired"), ("revoked", "revoked")],
    )
    expiring_within = forms.IntegerField(
        required=False, min_value=0, max_value=MAX_DAYS, label="Expiring within (days)"
    )
    issued_from = forms.DateField(required=False, label="Issued from", input_formats=["%Y-%m-%d"])
    issued_to = forms.DateField(required=False, label="Issued to", input_formats=["%Y-%m-%d"])
    sort = forms.ChoiceField(
        required=False,
        choices=[("issued", "issued"), ("expires", "expires"), ("fqdn", "FQDN"), ("owner", "owner")],
    )
    dir = forms.ChoiceField(required=False, choices=[("desc", "descending"), ("asc", "ascending")], label="Order")

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        start, end = cleaned.get("issued_from"), cleaned.get("issued_to")
        if start and end and start > end:
            self.add_error("issued_to", "The end date is before the start date.")
        return cleaned

    def filters(self) -> InventoryFilters:
        data = self.cleaned_data
        return InventoryFilters(
            q=data.get("q") or "",
            status=data.get("status") or "",
            expiring_within=data.get("expiring_within"),
            issued_from=data.get("issued_from"),
            issued_to=data.get("issued_to"),
            sort=data.get("sort") or "issued",
            direction=data.get("dir") or "desc",
        )


class AuditFilterForm(forms.Form):
    action = forms.CharField(required=False, max_length=64, strip=True, help_text="peer.approved or peer.*")
    actor = forms.CharField(required=False, max_length=160, strip=True)
    target = forms.CharField(required=False, max_length=160, strip=True, help_text="e.g. peer:12")
    date_from = forms.DateField(required=False, label="From", input_formats=["%Y-%m-%d"])
    date_to = forms.DateField(required=False, label="To", input_formats=["%Y-%m-%d"])

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return cleaned

    def filters(self) -> AuditFilters:
        data = self.cleaned_data
        return AuditFilters(
            action=data.get("action") or "",
            actor=data.get("actor") or "",
            target=data.get("target") or "",
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
        )
