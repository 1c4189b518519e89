"""Pages for roaming users (register, follow, list) and CA admins (queue, preview, decide, policy).

Thin: load and authorize through selectors, validate with a form, call one service, render.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ca_portal.authority.roles import is_ca_admin
from enrollment import selectors, services
from enrollment.forms import PeerRegisterForm, PolicyForm, RejectForm
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
    peers = Peer.objects.filter(owner_id=request.user.pk).select_related("certificate_request__certificate")
    return render(request, "enrollment/peer_list.html", {"peers": peers.order_by("-created_at")})


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def peer_register(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    form = PeerRegisterForm(request.POST or None, request.FILES or None, allow_server=is_ca_admin(user))
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
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            if registration.key_passphrase:
                # Shown once, in this response only; the web tier keeps no copy.
                return render(
                    request,
                    "enrollment/passphrase_once.html",
                    {"peer": registration.peer, "passphrase": registration.key_passphrase},
                )
            messages.success(request, f"{registration.peer.fqdn} is registered and waits for a CA admin.")
            return redirect("enrollment:detail", registration.peer.pk)
    return render(request, "enrollment/peer_register.html", {"form": form})


@require_GET
@login_required
def peer_detail(request: HttpRequest, peer_id: int) -> HttpResponse:
    peer = selectors.peer_for_user(_user(request), peer_id)
    return render(request, "enrollment/peer_detail.html", {"peer": peer, **_progress_context(peer)})


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


# --- CA admins --------------------------------------------------------------------------------


@require_GET
@login_required
def approval_queue(request: HttpRequest) -> HttpResponse:
    _require_admin(request)
    status = request.GET.get("status", "pending")
    kind = request.GET.get("kind", "")
    search = request.GET.get("q", "")
    sort = request.GET.get("sort", "oldest")
    policy = services.policy_get()
    peers = list(selectors.approval_queue(status=status, kind=kind, search=search, sort=sort)[:500])
    rows = [(peer, selectors.issuance_preview(peer, policy).warnings) for peer in peers]
    return render(
        request,
        "enrollment/approval_queue.html",
        {"rows": rows, "status": status, "kind": kind, "q": search, "sort": sort, "sorts": selectors.QUEUE_SORTS},
    )


@require_GET
@login_required
def approval_detail(request: HttpRequest, peer_id: int) -> HttpResponse:
    _require_admin(request)
    peer = selectors.peer_for_user(_user(request), peer_id)
    preview = selectors.issuance_preview(peer, services.policy_get())
    return render(request, "enrollment/approval_detail.html", {"peer": peer, "preview": preview, "form": RejectForm()})


@require_POST
@login_required
def approve(request: HttpRequest, peer_id: int) -> HttpResponse:
    admin = _require_admin(request)
    peer = selectors.peer_for_user(admin, peer_id)
    try:
        services.peer_approve(peer_id=peer.pk, approver=admin, actor=admin)
    except services.EnrollmentError as exc:
        messages.error(request, f"{peer.fqdn}: {exc}")
        return redirect("enrollment:approval", peer.pk)
    messages.success(request, f"Approved {peer.fqdn}; the signer is issuing the certificate.")
    return redirect("enrollment:queue")


@require_POST
@login_required
def reject(request: HttpRequest, peer_id: int) -> HttpResponse:
    admin = _require_admin(request)
    peer = selectors.peer_for_user(admin, peer_id)
    form = RejectForm(request.POST)
    if form.is_valid():
        try:
            services.peer_reject(peer_id=peer.pk, approver=admin, reason=form.cleaned_data["reason"], actor=admin)
        except services.EnrollmentError as exc:
            messages.error(request, f"{peer.fqdn}: {exc}")
        else:
            messages.success(request, f"Rejected {peer.fqdn}.")
            return redirect("enrollment:queue")
    preview = selectors.issuance_preview(peer, services.policy_get())
    return render(request, "enrollment/approval_detail.html", {"peer": peer, "preview": preview, "form": form})


@require_POST
@login_required
def bulk_approve(request: HttpRequest) -> HttpResponse:
    admin = _require_admin(request)
    ids = [int(v) for v in request.POST.getlist("peer") if v.isdigit()][:500]
    approved, refused = [], []
    for peer_id in ids:
        try:
            peer = services.peer_approve(peer_id=peer_id, approver=admin, actor=admin)
            approved.append(peer.fqdn)
        except Peer.DoesNotExist:
            refused.append(f"#{peer_id}: no such peer")
        except services.EnrollmentError as exc:
            refused.append(f"#{peer_id}: {exc}")
    if approved:
        messages.success(request, f"Approved {len(approved)}: {', '.join(approved[:20])}")
    for line in refused[:20]:
        messages.error(request, line)
    if not ids:
        messages.error(request, "Select at least one request to approve.")
    return redirect("enrollment:queue")


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def policy_edit(request: HttpRequest) -> HttpResponse:
    admin = _require_admin(request)
    policy = services.policy_get()
    initial = {
        "allowed_domains": "\n".join(policy.allowed_domains),
        "default_validity_days": policy.default_validity_days,
        "allow_self_approval": policy.allow_self_approval,
    }
    form = PolicyForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.policy_update(actor=admin, **form.cleaned_data)
        except services.EnrollmentError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            messages.success(request, "Site policy saved.")
            return redirect("enrollment:policy")
    return render(request, "enrollment/policy.html", {"form": form, "policy": policy})
