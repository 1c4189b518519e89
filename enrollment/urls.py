from django.urls import path

from enrollment import views

app_name = "enrollment"
urlpatterns = [
    path("", views.peer_list, name="list"),
    path("new/", views.peer_register, name="register"),
    path("<int:peer_id>/", views.peer_detail, name="detail"),
    path("<int:peer_id>/status.json", views.peer_status, name="status"),
    path("<int:peer_id>/certificate.pem", views.certificate_pem, name="certificate"),
    path("<int:peer_id>/revoke/", views.revoke, name="revoke"),
    path("<int:peer_id>/renew/", views.renew, name="renew"),
    path("approvals/", views.approval_queue, name="queue"),
    path("approvals/bulk-approve/", views.bulk_approve, name="bulk-approve"),
    path("approvals/<int:peer_id>/", views.approval_detail, name="approval"),
    path("approvals/<int:peer_id>/approve/", views.approve, name="approve"),
    path("approvals/<int:peer_id>/reject/", views.reject, name="reject"),
    path("policy/", views.policy_edit, name="policy"),
]
