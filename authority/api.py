"""The CA in the JSON API: /api/v1/ca. The certificates and the audit log, which read across the
apps (a certificate's owner is its peer's), are served by ``audit.api``."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from authority.models import CertificateAuthority
from authority.services import active_ca
from core.api import ApiView, error_responses


class CaSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    certificate = serializers.CharField(source="certificate_pem", read_only=True, help_text="PEM")
    subject = serializers.CharField(read_only=True, help_text="RFC 4514")
    legacy = serializers.BooleanField(source="is_legacy", read_only=True)

    class Meta:
        model = CertificateAuthority
        fields = ["certificate", "fingerprint_sha256", "subject", "not_before", "not_after", "key_type", "legacy"]
        read_only_fields = fields


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


urlpatterns = [
    path("ca", CaView.as_view(), name="api-ca"),
]
