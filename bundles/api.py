"""GET /api/v1/peers/{id}/bundle: the peer's zip (the owner; a CA admin for the gateway)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpResponse
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.authentication import TokenAuthentication
from rest_framework.request import Request

from bundles import services, sync_api
from bundles.models import BundleDownload
from bundles.views import zip_response
from core.api import ApiView, error_responses, object_id
from enrollment.api import PEER_ID
from enrollment.models import Peer


class PeerBundleView(ApiView):
    @extend_schema(
        operation_id="peers_bundle",
        tags=["peers"],
        summary="Download a peer's bundle (zip)",
        description=(
            "The owner downloads a client's bundle; CA admins download the gateway's (a server peer). Everyone "
            "else gets 404. 409 while the bundle is not made yet. A key the portal made is "
            "included once, and only for token authentication (a session cookie could be sent by another "
            "site's page); the `X-Private-Key` header says `included`, `withheld`, `delivered-before` or `none`."
        ),
        parameters=[PEER_ID],
        responses={
            (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="the bundle"),
            **error_responses(401, 404, 409),
        },
    )
    def get(self, request: Request, id: str) -> HttpResponse:
        user = request.user
        assert isinstance(user, User)
        by_token = isinstance(request.successful_authenticator, TokenAuthentication)
        download = services.bundle_download(
            peer_id=object_id(id),
            user=user,
            address=request.META.get("REMOTE_ADDR") or None,
            via=BundleDownload.Via.API,
            release_key=by_token,
            # 404, not 403: whether a bundle exists is not for those who may not take it (and a
            # refusal must not depend on the peer existing; tests/test_authz_matrix.py).
            refusal=services.Refusal.NOT_FOUND,
        )
        response = zip_response(download)
        if download.with_key:
            state = "included"
        elif download.key_was_delivered_before:
            state = "delivered-before"
        elif download.peer.key_source == Peer.KeySource.PORTAL and not by_token:
            state = "withheld"
        else:
            state = "none"
        response["X-Private-Key"] = state
        return response


urlpatterns = [
    path("peers/<str:id>/bundle", PeerBundleView.as_view(), name="api-peer-bundle"),
    *sync_api.urlpatterns,  # GET /api/v1/gateway/bundle, with the gateway's sync token only
]
