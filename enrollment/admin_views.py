"""Pages for CA admins: the approval queue, the approval page with its preview, the decisions and
the site policy. Thin, as the roaming users' pages in ``enrollment.views``."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from enrollment import networks, selectors, services
from enrollment.forms import ApproveForm, PolicyForm, RejectForm
from enrollment.models import Peer
from enrollment.views import _require_admin, _user


@require_GET
@login_required
def approval_queue(request: HttpRequest) -> HttpResponse:
    _require_admin(request)
    status = request.GET.get("status", "pending")
    kind = request.GET.get("kind", "")
    search = request.GET.get("q", "")
    sort = request.GET.get("sort", "oldest")
    policy = selectors.policy_get()
    peers = list(selectors.approval_queue(status=status, kind=kind, search=search, sort=sort)[:500])
    in_use = networks.networks_in_use() if any(peer.networks for peer in peers) else []
    rows = [(peer, selectors.issuance_preview(peer, policy, in_use=in_use).warnings) for peer in peers]
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
    return _approval_page(request, peer, RejectForm())


def _approval_page(request: HttpRequest, peer: Peer, form: RejectForm) -> HttpResponse:
    preview = selectors.issuance_preview(peer, selectors.policy_get())
    approve_form = ApproveForm(initial={"overlap_with": ",".join(str(i) for i in preview.overlap_peer_ids)})
    return render(
        request,
        "enrollment/approval_detail.html",
        {"peer": peer, "preview": preview, "form": form, "approve_form": approve_form},
    )


@require_POST
@login_required
def approve(request: HttpRequest, peer_id: int) -> HttpResponse:
    admin = _require_admin(request)
    peer = selectors.peer_for_user(admin, peer_id)
    form = ApproveForm(request.POST)
    accepted = form.cleaned_data["accepted"] if form.is_valid() else []
    try:
        services.peer_approve(peer_id=peer.pk, approver=admin, actor=admin, accept_overlap_with=accepted)
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
    return _approval_page(request, peer, form)


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
    policy = selectors.policy_get()
    initial = {
        "allowed_domains": "\n".join(policy.allowed_domains),
        "default_validity_days": policy.default_validity_days,
        "allow_self_approval": policy.allow_self_approval,
        "auto_approve_renewals": policy.auto_approve_renewals,
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
