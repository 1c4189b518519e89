"""The CA, certificates and the audit log in the JSON API: /api/v1/ca, /certificates, /audit.

All read-only. Certificates: CA admins and auditors see all, roaming users those of their own
peers. The audit log is for CA admins and auditors only.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.urls import path
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from authority.models import AuditEvent, Certificate, CertificateAuthority
from authority.services import active_ca
from core.api import ApiListView, ApiView, IsCaAdminOrAuditor, error_responses, query
from core.roles import is_auditor, is_ca_admin

CERTIFICATE_STATUSES = ["valid", "expired"]
CSV_COLUMNS = ["serial", "fqdn", "not_before", "not_after", "fingerprint_sha256", "issued_at", "status", "owner"]


# --- serializers -----------------------------------------------------------------------------


class CaSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    certificate = serializers.CharField(source="certificate_pem", read_only=True, help_text="PEM")
    subject = serializers.CharField(read_only=True, help_text="RFC 4514")
    legacy = serializers.BooleanField(source="is_legacy", read_only=True)

    class Meta:
        model = CertificateAuthority
        fields = ["certificate", "fingerprint_sha256", "subject", "not_before", "not_after", "key_type", "legacy"]
        read_only_fields = fields


class CertificateSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    status = serializers.SerializerMethodField()
    owner = serializers.SerializerMethodField()

    class Meta:
        model = Certificate
        fields = CSV_COLUMNS
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=CERTIFICATE_STATUSES))
    def get_status(self, certificate: Certificate) -> str:
        now = self.context.get("now") or timezone.now()
        return "expired" if certificate.not_after <= now else "valid"

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_owner(self, certificate: Certificate) -> str | None:
        """The owner of the peer the certificate was issued for; else whoever requested it."""
        request = certificate.request
        try:
            return str(request.peer.owner.get_username())
        except ObjectDoesNotExist:
            pass
        return request.requested_by.get_username() if request.requested_by else None


class CertificateFilterSerializer(serializers.Serializer):  # type: ignore[type-arg]
    fqdn = serializers.CharField(max_length=127, required=False, help_text="exact FQDN")
    serial = serializers.RegexField(
        r"^[0-9A-Fa-f:]{1,64}$", required=False, help_text="hex, with or without colons or leading zeros"
    )
    expires_before = serializers.DateTimeField(required=False, help_text="ISO 8601; notAfter strictly before it")
    format = serializers.ChoiceField(
        choices=["json", "csv"], default="json", help_text="csv streams every match as text/csv, without pages"
    )


class AuditEventSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = AuditEvent
        fields = ["seq", "at", "actor", "action", "target", "data", "hash"]
        read_only_fields = fields


class AuditFilterSerializer(serializers.Serializer):  # type: ignore[type-arg]
    action = serializers.CharField(max_length=64, required=False, help_text="exact action, e.g. peer.approved")
    target = serializers.CharField(max_length=160, required=False, help_text="exact target, e.g. peer:12")


# --- selectors -------------------------------------------------------------------------------


def certificate_list(
    user: Any, *, fqdn: str | None = None, serial: str | None = None, expires_before: datetime | None = None
) -> QuerySet[Certificate]:
    certificates = Certificate.objects.select_related("request__requested_by", "request__peer__owner")
    if not (is_ca_admin(user) or is_auditor(user)):
        certificates = certificates.filter(request__peer__owner_id=user.pk)
    if fqdn:
        certificates = certificates.filter(fqdn=fqdn)
    if serial:
        certificates = certificates.filter(serial=serial.replace(":", "").lower().lstrip("0") or "0")
    if expires_before:
        certificates = certificates.filter(not_after__lt=expires_before)
    return certificates.order_by("-issued_at", "-pk")


def audit_list(*, action: str | None = None, target: str | None = None) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.all()
    if action:
        events = events.filter(action=action)
    if target:
        events = events.filter(target=target)
    return events.order_by("-seq")


class _Echo:
    def write(self, value: str) -> str:
        return value


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
    return "'" + text if text.startswith(("=", "+", "-", "@", "\t", "\r")) else text


def certificates_csv(certificates: QuerySet[Certificate]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    context = {"now": timezone.now()}
    for certificate in certificates.iterator(chunk_size=500):
        row = CertificateSerializer(certificate, context=context).data
        yield writer.writerow([_cell(row[column]) for column in CSV_COLUMNS])


# --- views -----------------------------------------------------------------------------------


class CaView(ApiView):
    @extend_schema(
        operation_id="ca_retrieve",
        tags=["ca"],
        summary="The active CA",
        description="404 until a CA exists. `GET /ca.pem` serves the same certificate without a login.",
        responses={200: CaSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request) -> Response:
        ca = active_ca()
        if ca is None:
            raise exceptions.NotFound("there is no CA yet")
        return Response(CaSerializer(ca).data)


class CertificateListView(ApiListView):
    @extend_schema(
        operation_id="certificates_list",
        tags=["certificates"],
        summary="List issued certificates",
        description="CA admins and auditors see all; roaming users the certificates of their own peers. "
        "Newest first. `format=csv` streams every match as text/csv with a header row.",
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
        certificates = certificate_list(request.user, **filters)
        if export:
            response = StreamingHttpResponse(certificates_csv(certificates), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = 'attachment; filename="certificates.csv"'
            return response
        page = self.paginate_queryset(certificates)
        context = {"now": timezone.now()}
        return self.get_paginated_response(CertificateSerializer(page, many=True, context=context).data)


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
        events = audit_list(**query(AuditFilterSerializer, request))
        page = self.paginate_queryset(events)
        return self.get_paginated_response(AuditEventSerializer(page, many=True).data)


urlpatterns = [
    path("ca", CaView.as_view(), name="api-ca"),
    path("certificates", CertificateListView.as_view(), name="api-certificates"),
    path("audit", AuditListView.as_view(), name="api-audit"),
]
