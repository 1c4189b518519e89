"""Peers in the JSON API: /api/v1/peers, /api/v1/peers/{id}, .../approve and .../reject.

Who sees what (T23): roaming users see their own peers only and get 404 for any other; CA admins
and auditors see every peer. Only CA admins decide, and never on their own requests (T29, in
``peer_approve``); a roaming user who tries on their own peer gets 403, on another's 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.urls import path
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import ApiListView, ApiView, Refused, body, error_responses, object_id, query
from core.roles import is_auditor, is_ca_admin
from enrollment import selectors
from enrollment.models import Peer
from enrollment.serializers import (
    PeerApproveSerializer,
    PeerCreatedSerializer,
    PeerCreateSerializer,
    PeerFilterSerializer,
    PeerRejectSerializer,
    PeerRevokeSerializer,
    PeerSerializer,
    peer_created_data,
    peer_data,
)
from enrollment.services import peer_approve, peer_register_full, peer_reject, peer_revoke

PEER_ID = OpenApiParameter(
    "id", {"type": "integer", "minimum": 1, "maximum": 10**18 - 1}, OpenApiParameter.PATH, description="the peer's id"
)


def peer_get(user: Any, raw_id: str) -> Peer:
    """The peer if this user may see it; 404 otherwise, so ids of other people's peers leak nothing."""
    peer = selectors.peer_seen_by(user, object_id(raw_id))
    if peer is None:
        raise exceptions.NotFound("no such peer")
    return peer


def _decision_input(
    request: Request, raw_id: str, serializer_class: type[serializers.Serializer[Any]]
) -> tuple[int, User, dict[str, Any]]:
    """The peer id, the deciding CA admin and the checked body; refusals in the usual order:
    404 (a peer this user cannot see), 403 (not a CA admin), then 400 (bad input).

    A CA admin sees every peer, so for them the peer is not read here: the service's locked read
    gives the 404 (``Peer.DoesNotExist``, answered with the same "no such peer"). Only when the
    input is bad is the peer read first, so that a missing peer is still a 404 rather than a 400.
    """
    user = request.user
    if not is_ca_admin(user):
        peer_get(user, raw_id)  # 404 first: a stranger learns nothing from a 403
        raise exceptions.PermissionDenied("only CA admins decide on peers")
    assert isinstance(user, User)
    peer_id = object_id(raw_id)
    try:
        data = body(serializer_class, request)
    except Exception:
        peer_get(user, raw_id)
        raise
    return peer_id, user, data


# --- views -----------------------------------------------------------------------------------


class PeerListView(ApiListView):
    @extend_schema(
        operation_id="peers_list",
        tags=["peers"],
        summary="List peers",
        description="Roaming users see their own peers; CA admins and auditors see all. Newest first.",
        parameters=[PeerFilterSerializer],
        responses={200: PeerSerializer(many=True), **error_responses(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        peers = selectors.peers_listed(request.user, **query(PeerFilterSerializer, request))
        page = self.paginate_queryset(peers)
        return self.get_paginated_response(PeerSerializer(page, many=True).data)

    @extend_schema(
        operation_id="peers_create",
        tags=["peers"],
        summary="Register a peer",
        description=(
            "Records a peer waiting for approval, owned by the caller. With `csr` the peer brings its own "
            "key; without it the portal makes an RSA-3072 key and returns `key_passphrase` in this response "
            "only. Only CA admins register `server` peers (VPN gateways). Fields not listed are refused."
        ),
        request=PeerCreateSerializer,
        responses={
            201: PeerCreatedSerializer,
            **error_responses(400, 401, 403, 409, 413, 415),
        },
        examples=[
            OpenApiExample(
                "roaming client with its own CSR",
                value={"fqdn": "laptop.example.com", "kind": "client", "csr": "-----BEGIN CERTIFICATE REQUEST-----..."},
                request_only=True,
            ),
            OpenApiExample(
                "VPN gateway, key made by the portal",
                value={
                    "fqdn": "vpn.example.com",
                    "kind": "server",
                    "address": "192.0.2.1",
                    "networks": ["10.0.0.0/24"],
                },
                request_only=True,
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        data = body(PeerCreateSerializer, request)
        if data["kind"] == Peer.Kind.SERVER and not is_ca_admin(request.user):
            raise Refused("only CA admins register VPN gateways", field="kind", status_code=status.HTTP_403_FORBIDDEN)
        assert isinstance(request.user, User)
        registration = peer_register_full(
            owner=request.user,
            fqdn=data["fqdn"],
            kind=data["kind"],
            networks=data["networks"],
            address=data.get("address") or None,
            csr_pem=data.get("csr") or None,
            actor=request.user,
        )
        return Response(
            peer_created_data(registration.peer, registration.key_passphrase), status=status.HTTP_201_CREATED
        )


class PeerDetailView(ApiView):
    @extend_schema(
        operation_id="peers_retrieve",
        tags=["peers"],
        summary="One peer",
        parameters=[PEER_ID],
        responses={200: PeerSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(peer_data(peer_get(request.user, id)))


class PeerApproveView(ApiView):
    @extend_schema(
        operation_id="peers_approve",
        tags=["peers"],
        summary="Approve a pending peer (CA admins)",
        description="Queues the signing. Nobody approves their own request (403) unless the site policy allows "
        "it on a one-admin site. A peer that is not pending, or whose key is still being made, gives 409. "
        "So does a peer whose networks overlap another live peer's (the VPN gateway's included), unless "
        "`accept_overlap_with` lists every such peer's id; the accepted overlaps are recorded in the audit log.",
        parameters=[PEER_ID],
        request=PeerApproveSerializer,
        responses={200: PeerSerializer, **error_responses(400, 401, 403, 404, 409, 413, 415)},
    )
    def post(self, request: Request, id: str) -> Response:
        peer_id, approver, data = _decision_input(request, id, PeerApproveSerializer)
        try:
            approved = peer_approve(
                peer_id=peer_id, approver=approver, actor=approver, accept_overlap_with=data["accept_overlap_with"]
            )
        except Peer.DoesNotExist:
            raise exceptions.NotFound("no such peer") from None
        return Response(peer_data(approved))


class PeerRejectView(ApiView):
    @extend_schema(
        operation_id="peers_reject",
        tags=["peers"],
        summary="Reject a pending peer (CA admins)",
        description="The reason is shown to the owner. The FQDN becomes free to register again.",
        parameters=[PEER_ID],
        request=PeerRejectSerializer,
        responses={200: PeerSerializer, **error_responses(400, 401, 403, 404, 409, 413, 415)},
    )
    def post(self, request: Request, id: str) -> Response:
        peer_id, approver, data = _decision_input(request, id, PeerRejectSerializer)
        try:
            rejected = peer_reject(peer_id=peer_id, approver=approver, reason=data["reason"], actor=approver)
        except Peer.DoesNotExist:
            raise exceptions.NotFound("no such peer") from None
        return Response(peer_data(rejected))


class PeerRevokeView(ApiView):
    @extend_schema(
        operation_id="peers_revoke",
        tags=["peers"],
        summary="Revoke an issued peer's certificate (its owner, or CA admins)",
        description="The certificate goes on the next CRL at once (the signer publishes it); the FQDN becomes free "
        "to register again. A peer that is not issued, or already revoked, gives 409.",
        parameters=[PEER_ID],
        request=PeerRevokeSerializer,
        responses={200: PeerSerializer, **error_responses(400, 401, 403, 404, 409, 413, 415)},
    )
    def post(self, request: Request, id: str) -> Response:
        user = request.user
        assert isinstance(user, User)
        if is_auditor(user) and not is_ca_admin(user):  # auditors change nothing, whatever the id
            raise exceptions.PermissionDenied("auditors review; they do not revoke")
        peer = peer_get(user, id)  # then 404: a stranger learns nothing
        if not (is_ca_admin(user) or peer.owner_id == user.pk):
            raise exceptions.PermissionDenied("only the owner or a CA admin may revoke this peer")
        data = body(PeerRevokeSerializer, request)
        revoked = peer_revoke(peer_id=peer.pk, user=user, reason=data["reason"], comment=data["comment"])
        return Response(peer_data(revoked))


urlpatterns = [
    path("peers", PeerListView.as_view(), name="api-peers"),
    path("peers/<str:id>", PeerDetailView.as_view(), name="api-peer"),
    path("peers/<str:id>/approve", PeerApproveView.as_view(), name="api-peer-approve"),
    path("peers/<str:id>/reject", PeerRejectView.as_view(), name="api-peer-reject"),
    path("peers/<str:id>/revoke", PeerRevokeView.as_view(), name="api-peer-revoke"),
]
