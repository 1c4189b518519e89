"""Certificates and the audit log in the JSON API: /api/v1/certificates and /api/v1/audit.

All read-only. Certificates: CA admins and auditors see all, roaming users those of their own
peers. The audit log is for CA admins and auditors only. A certificate's status, owner and CSV
columns are the inventory's (``audit.selectors``, ``audit.exports``), so the API and the pages
never disagree (review, usability 1: the API used to call a revoked certificate "valid").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import F, QuerySet
from django.http import StreamingHttpResponse
from django.urls import path
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from audit.exports import EXPORT_COLUMNS, certificates_csv
from audit.selectors import certificate_status, normalize_serial, with_row_columns
from authority.models import AuditEvent, Certificate
from core.api import ApiListView, IsCaAdminOrAuditor, error_responses, query
from core.roles import is_auditor, is_ca_admin

CERTIFICATE_STATUSES = ["valid", "expired", "revoked"]
NEWEST_FIRST = [F("issued_at").desc(), F("pk").desc()]


class CertificateSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    status = serializers.SerializerMethodField()
    owner = serializers.CharField(read_only=True, allow_null=True, help_text="the peer's owner, else the requester")
    kind = serializers.CharField(read_only=True, help_text="client or server")
    peer_id = serializers.IntegerField(read_only=True, allow_null=True, help_text="null for sign_csr certificates")
    revocation_reason = serializers.CharField(read_only=True, help_text="the RFC 5280 reason; empty unless revoked")

    class Meta:
        model = Certificate
        fields = EXPORT_COLUMNS  # the same fields, in the same order, as the CSV and the page's export
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=CERTIFICATE_STATUSES))
    def get_status(self, certificate: Certificate) -> str:
        now = self.context.get("now") or timezone.now()
        return certificate_status(revoked_at=certificate.revoked_at, not_after=certificate.not_after, now=now)


class CertificateFilterSerializer(serializers.Serializer):  # type: ignore[type-arg]
    fqdn = serializers.CharField(max_length=127, required=False, help_text="exact FQDN")
    serial = serializers.RegexField(
        r"^[0-9A-Fa-f:]{1,64}$", required=False, help_text="hex, with or without colons or leading zeros"
    )
    expires_before = serializers.DateTimeField(required=False, help_text="ISO 8601; notAfter strictly before it")
    format = serializers.ChoiceField(
        choices=["json", "csv"],
        default="json",
        help_text="csv streams every match as text/csv, without pages, with the inventory export's columns",
    )


class AuditEventSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = AuditEvent
        fields = ["seq", "at", "actor", "action", "target", "data", "hash"]
        read_only_fields = fields


class AuditFilterSerializer(serializers.Serializer):  # type: ignore[type-arg]
    action = serializers.CharField(max_length=64, required=False, help_text="exact action, e.g. peer.approved")
    target = serializers.CharField(max_length=160, required=False, help_text="exact target, e.g. peer:12")


def certificates_visible(
    user: Any, *, fqdn: str | None = None, serial: str | None = None, expires_before: datetime | None = None
) -> QuerySet[Certificate]:
    """The certificates ``user`` may list, filtered; not ordered, owners not joined yet."""
    certificates = Certificate.objects.all()
    if not (is_ca_admin(user) or is_auditor(user)):
        certificates = certificates.filter(request__peer__owner_id=user.pk)
    if fqdn:
        certificates = certificates.filter(fqdn=fqdn)
    if serial:
        certificates = certificates.filter(serial=normalize_serial(serial))
    if expires_before:
        certificates = certificates.filter(not_after__lt=expires_before)
    return certificates


def audit_events(*, action: str | None = None, target: str | None = None) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.all()
    if action:
        events = events.filter(action=action)
    if target:
        events = events.filter(target=target)
    return events.order_by("-seq")


class CertificateListView(ApiListView):
    @extend_schema(
        operation_id="certificates_list",
        tags=["certificates"],
        summary="List issued certificates",
        description="CA admins and auditors see all; roaming users the certificates of their own peers. "
        "Newest first. `format=csv` streams every match as text/csv with a header row, in the columns of "
        "the inventory page's export.",
        parameters=[CertificateFilterSerializer],
        responses={
            (200, "application/json"): CertificateSerializer(many=True),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="with format=csv"),
            **error_responses(400, 401, 403),
        },
    )
    def get(self, request: Request) -> Response | StreamingHttpResponse:
        filters = query(CertificateFilterSerializer, request)
        export = filters.pop("format") == "csv"
        certificates = certificates_visible(request.user, **filters)
        now = timezone.now()
        if export:
            rows = certificates_csv(certificates, NEWEST_FIRST, now=now)
            response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = 'attachment; filename="certificates.csv"'
            return response
        page = self.paginate_queryset(with_row_columns(certificates).order_by(*NEWEST_FIRST))
        return self.get_paginated_response(CertificateSerializer(page, many=True, context={"now": now}).data)


class AuditListView(ApiListView):
    permission_classes = [IsAuthenticated, IsCaAdminOrAuditor]

    @extend_schema(
        operation_id="audit_list",
        tags=["audit"],
        summary="The audit log (CA admins and auditors)",
        description="Newest first (by sequence number). `manage.py audit_verify` checks the hash chain.",
        parameters=[AuditFilterSerializer],
        responses={200: AuditEventSerializer(many=True), **error_responses(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        events = audit_events(**query(AuditFilterSerializer, request))
        page = self.paginate_queryset(events)
        return self.get_paginated_response(AuditEventSerializer(page, many=True).data)


urlpatterns = [
    path("certificates", CertificateListView.as_view(), name="api-certificates"),
    path("audit", AuditListView.as_view(), name="api-audit"),
]
