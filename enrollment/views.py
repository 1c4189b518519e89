"""Pages for roaming users (register, follow, list) and CA admins (queue, preview, decide, policy).

Thin: load and authorize through selectors, validate with a form, call one service, render.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from core.roles import is_auditor, is_ca_admin
from enrollment import resends, selectors, services
from enrollment.forms import PeerRegisterForm, RenewForm, RevokeForm
from enrollment.models import Peer

PROGRESS_STEPS = [
    ("making-key", "Key"),
    ("pending", "Waiting for approval"),
    ("approved", "Approved"),
    ("signing", "Signing"),
    ("issued", "Issued"),
]
NEXT_STEP = {
    "making-key": "The signer is making your RSA-3072 key. This takes a few seconds.",
    "pending": "A CA admin has to approve the request. You get an email when they decide.",
    "approved": "Approved. The request is queued for the signer.",
    "signing": "The signer is signing your certificate right now.",
    "issued": "Your certificate is ready. Open the bundle: the configs, the policy, the certificates and the "
    "install script for this peer, in one zip.",
    "rejected": "A CA admin rejected this request. Fix what they name and register the FQDN again.",
    "failed": "Signing failed for the reason below. Register again, or ask a CA admin.",
    "revoked": "This certificate is revoked. Gateways refuse it once they load the new CRL. The FQDN is free: "
    "register it again for a new certificate.",
}


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


def _require_admin(request: HttpRequest) -> User:
    if not is_ca_admin(request.user):
        raise PermissionDenied("only CA admins may do this")
    return _user(request)


@require_GET
@login_required
def peer_list(request: HttpRequest) -> HttpResponse:
    """The signed-in user's own peers, newest first."""
    context = {"peers": selectors.peers_owned_by(_user(request)), **selectors.expiry_marks()}
    return render(request, "enrollment/peer_list.html", context)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def peer_register(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    kind = request.GET.get("kind", "")  # the overview's "Register the VPN gateway" asks for kind server
    form = PeerRegisterForm(
        request.POST or None,
        request.FILES or None,
        allow_server=is_ca_admin(user),
        initial={"kind": kind} if kind in Peer.Kind.values else None,
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            registration = services.peer_register_full(
                owner=user,
                fqdn=data["fqdn"],
                kind=data["kind"],
                networks=data["networks"],
                address=data["address"] or None,
                csr_pem=data["csr"] or None,
                actor=user,
            )
        except services.EnrollmentError as exc:
            resent = _registration_resent(user, data) if exc.status == 409 else None
            if resent is not None:
                messages.info(request, _resent_message(resent))
                return redirect("enrollment:detail", resent.pk)
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            if registration.key_passphrase:
                # Shown once, in this response only; the web tier keeps no copy (not in the session
                # either). A reload sends the form again, which leads to the peer's page (above).
                return render(
                    request,
                    "enrollment/passphrase_once.html",
                    {"peer": registration.peer, "passphrase": registration.key_passphrase},
                )
            messages.success(request, f"{registration.peer.fqdn} is registered and waits for a CA admin.")
            return redirect("enrollment:detail", registration.peer.pk)
    return render(request, "enrollment/peer_register.html", {"form": form})


def _registration_resent(user: User, data: dict[str, Any]) -> Peer | None:
    """The user's own waiting peer when this refused registration is the one that made it (a reload)."""
    return resends.registration_resent(
        user,
        fqdn=data["fqdn"],
        kind=data["kind"],
        networks=services.parse_networks(data["networks"]),  # it passed once: the service refused a duplicate
        address=data["address"] or None,
        csr_pem=data["csr"] or None,
    )


def _resent_message(peer: Peer, *, renewal: bool = False) -> str:
    """What a page says when the browser sent a registration or renewal that was already recorded."""
    what = "The renewal of {} is requested" if renewal else "{} is registered"
    said = f"{what.format(peer.fqdn)} already: your browser sent the same form again (a reload, or Back)."
    if peer.key_source == Peer.KeySource.PORTAL:
        return (
            f"{said} The passphrase of its key was shown once, on the page before, and cannot be shown again. "
            "If you did not save it, ask a CA admin to reject this request, then register again."
        )
    return f"{said} This is its page."


@require_GET
@login_required
def peer_detail(request: HttpRequest, peer_id: int) -> HttpResponse:
    user = _user(request)
    peer = selectors.peer_for_user(user, peer_id)
    return render(
        request,
        "enrollment/peer_detail.html",
        {"peer": peer, **_progress_context(peer), **_renewal_context(peer, user)},
    )


def _renewal_context(peer: Peer, user: User) -> dict[str, object]:
    """What the peer page says about renewal: the Renew card, and links between old and new peers."""
    context: dict[str, object] = {
        "renewed_by": selectors.peer_renewed_by(peer),
        "renews_note": selectors.renewal_note(peer),
        "renew_card": False,
    }
    if context["renewed_by"] is not None and peer.status == "revoked":
        context["next_step"] = "This certificate is superseded by its renewal (linked above): use the renewal's bundle."
    if peer.owner_id == user.pk and peer.status == "issued" and peer.retired_at is None:
        certificate = peer.certificate_request.certificate  # type: ignore[union-attr]
        thresholds = selectors.renewal_reminder_thresholds()
        left = certificate.not_after - timezone.now()
        context.update(
            renew_card=True,
            renew_blocker=selectors.renewal_blocker(peer),
            renew_soon=bool(thresholds) and left <= timedelta(days=thresholds[0]),
            days_left=max(left.days, 0),
        )
    return context


@never_cache
@require_GET
@login_required
def peer_status(request: HttpRequest, peer_id: int) -> JsonResponse:
    """What the peer page polls to update its progress without a reload."""
    peer = selectors.peer_for_user(_user(request), peer_id)
    context = _progress_context(peer)
    request_row = peer.certificate_request
    certificate = getattr(request_row, "certificate", None) if request_row is not None else None
    return JsonResponse(
        {
            "status": peer.status,
            "progress": context["progress"],
            "step": context["step_index"],
            "next": context["next_step"],
            "failure": request_row.failure_reason if request_row is not None else "",
            "reason": peer.decision_reason,
            "serial": certificate.serial if certificate is not None else None,
        }
    )


def _progress_context(peer: Peer) -> dict[str, object]:
    progress = peer.progress
    keys = [key for key, _label in PROGRESS_STEPS]
    step_index = keys.index(progress) if progress in keys else -1
    return {
        "progress": progress,
        "steps": PROGRESS_STEPS if peer.key_source == Peer.KeySource.PORTAL else PROGRESS_STEPS[1:],
        "step_index": step_index,
        "next_step": NEXT_STEP.get(progress, ""),
    }


@require_GET
@login_required
def certificate_pem(request: HttpRequest, peer_id: int) -> HttpResponse:
    peer = selectors.peer_for_user(_user(request), peer_id)
    request_row = peer.certificate_request
    certificate = getattr(request_row, "certificate", None) if request_row is not None else None
    if certificate is None:
        return HttpResponse("no certificate has been issued for this peer yet\n", status=404, content_type="text/plain")
    response = HttpResponse(certificate.pem, content_type="application/x-pem-file")
    response["Content-Disposition"] = f'attachment; filename="{peer.fqdn}.crt"'
    return response


# --- revocation --------------------------------------------------------------------------------


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def revoke(request: HttpRequest, peer_id: int) -> HttpResponse:
    """The confirmation page (GET) and the revocation (POST) for the owner or a CA admin."""
    from authority.models import RevocationReason

    user = _user(request)
    admin = is_ca_admin(user)
    if is_auditor(user) and not admin:  # before the lookup: a refusal must not tell whether the peer exists
        raise PermissionDenied("auditors review; they do not revoke")
    peer = selectors.peer_for_user(user, peer_id)
    if not admin and peer.owner_id != user.pk:
        raise PermissionDenied("only the owner or a CA admin may revoke this peer")
    allowed = [c for c in RevocationReason.choices if admin or c[0] in services.OWNER_REASONS]
    form = RevokeForm(request.POST or None, reasons=allowed, initial={"reason": "keyCompromise"})
    if request.method == "POST" and form.is_valid():
        try:
            services.peer_revoke(
                peer_id=peer.pk, user=user, reason=form.cleaned_data["reason"], comment=form.cleaned_data["comment"]
            )
        except services.EnrollmentError as exc:
            if exc.status == 404:
                raise Http404(str(exc)) from None
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(request, f"{peer.fqdn} is revoked. A new CRL is being published.")
            return redirect("enrollment:detail", peer_id=peer.pk)
    return render(request, "enrollment/peer_revoke.html", {"peer": peer, "form": form})


# --- renewal -----------------------------------------------------------------------------------


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def renew(request: HttpRequest, peer_id: int) -> HttpResponse:
    """The renewal form (GET) and the renewal request (POST): the owner only, with a new CSR or a portal key."""
    user = _user(request)
    if is_auditor(user) and not is_ca_admin(user):  # before the lookup, like revocation
        raise PermissionDenied("auditors review; they do not renew")
    peer = selectors.peer_for_user(user, peer_id)
    if peer.owner_id != user.pk:
        raise Http404("no such peer")  # only the owner renews; admins see the peer but do not act for its owner
    form = RenewForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            registration = services.peer_renew(peer_id=peer.pk, user=user, csr_pem=form.cleaned_data["csr"] or None)
        except services.EnrollmentError as exc:
            if exc.status == 404:
                raise Http404(str(exc)) from None
            resent = (
                resends.renewal_resent(peer, csr_pem=form.cleaned_data["csr"] or None) if exc.status == 409 else None
            )
            if resent is not None:
                messages.info(request, _resent_message(resent, renewal=True))
                return redirect("enrollment:detail", resent.pk)
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            new = registration.peer
            if registration.key_passphrase:
                # Shown once, in this response only; the web tier keeps no copy.
                return render(
                    request,
                    "enrollment/passphrase_once.html",
                    {"peer": new, "passphrase": registration.key_passphrase, "renewal": True},
                )
            if new.decision == Peer.Decision.APPROVED:
                messages.success(request, f"The renewal of {new.fqdn} is approved by the site policy and being signed.")
            else:
                messages.success(request, f"The renewal of {new.fqdn} is requested and waits for a CA admin.")
            return redirect("enrollment:detail", new.pk)
    return render(
        request,
        "enrollment/peer_renew.html",
        {
            "peer": peer,
            "form": form,
            "blocker": selectors.renewal_blocker(peer),
            "grace_hours": settings.RENEWAL_GRACE_HOURS,
        },
    )
