"""GET /api/v1/gateway/bundle: the site's gateway fetches its own bundle with its sync token.

Authentication is the sync token alone (``Authorization: Bearer cps_...``): this view accepts no
session and no API token, and no other view accepts a sync token (DRF's TokenAuthentication reads
only ``Token``), so the token fetches this one bundle and nothing else.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponse, HttpResponseNotModified
from django.urls import path
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, permissions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request
from rest_framework.views import APIView

from bundles import sync
from bundles.archive import content_disposition
from bundles.errors import BundleError
from bundles.models import SyncToken
from core.api import ApiView, ErrorSerializer, Refused

REALM = 'Bearer realm="ca_portal gateway sync"'


class SyncTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[AnonymousUser, SyncToken] | None:
        words = get_authorization_header(request).split()
        if not words or words[0].lower() != b"bearer":
            return None
        if len(words) != 2:
            raise exceptions.AuthenticationFailed("give one sync token after Bearer")
        token = sync.sync_token_authenticate(words[1].decode("ascii", "replace"))
        if token is None:
            raise exceptions.AuthenticationFailed("unknown or revoked sync token")
        return AnonymousUser(), token

    def authenticate_header(self, request: Request) -> str:
        return REALM


class SyncTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = SyncTokenAuthentication
    name = "syncToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "the gateway's sync token (cps_...)"}


class HasSyncToken(permissions.BasePermission):
    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.auth, SyncToken)


class GatewayBundleView(ApiView):
    authentication_classes = [SyncTokenAuthentication]
    permission_classes = [HasSyncToken]

    @extend_schema(
        operation_id="gateway_bundle_sync",
        tags=["gateway"],
        summary="The site's gateway fetches its current bundle (bin/ca-portal-sync)",
        description=(
            "Only with the gateway's sync token (`Authorization: Bearer cps_...`, made on the gateway page). "
            "Send the SHA-256 of the version the gateway runs in `If-None-Match`: the answer is 304 until "
            "there is a newer one. The zip never holds a private key; `ETag` and `X-Bundle-SHA256` are its SHA-256."
        ),
        parameters=[OpenApiParameter("If-None-Match", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False)],
        responses={
            (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="the gateway's bundle"),
            304: OpenApiResponse(description="the gateway runs the newest version"),
            401: OpenApiResponse(ErrorSerializer, description="no, an unknown or a revoked sync token (Bearer)"),
            403: OpenApiResponse(ErrorSerializer, description="the token's gateway is no longer the site's gateway"),
            409: OpenApiResponse(ErrorSerializer, description="the gateway's bundle is not made yet"),
        },
    )
    def get(self, request: Request) -> HttpResponse:
        token = request.auth
        assert isinstance(token, SyncToken)
        try:
            answer = sync.gateway_sync(
                token=token,
                if_none_match=request.META.get("HTTP_IF_NONE_MATCH", ""),
                address=request.META.get("REMOTE_ADDR") or None,
            )
        except BundleError as exc:
            raise Refused(str(exc), status_code=exc.status) from None
        response: HttpResponse
        if answer.data is None:
            response = HttpResponseNotModified()
        else:
            response = HttpResponse(answer.data, content_type="application/zip")
            response["Content-Disposition"] = content_disposition(answer.bundle.peer.fqdn)
            response["Content-Length"] = str(len(answer.data))
            response["X-Bundle-SHA256"] = answer.sha256
        response["ETag"] = f'"{answer.sha256}"'
        response["X-Bundle-Version"] = str(answer.bundle.version)
        response["Cache-Control"] = "no-store"
        return response


urlpatterns = [
    path("gateway/bundle", GatewayBundleView.as_view(), name="api-gateway-bundle"),
]
