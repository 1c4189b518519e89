from django.urls import path

from enrollment import admin_views, views

app_name = "enrollment"
urlpatterns = [
    path("", views.peer_list, name="list"),
    path("new/", views.peer_register, name="register"),
    path("<int:peer_id>/", views.peer_detail, name="detail"),
    path("<int:peer_id>/status.json", views.peer_status, name="status"),
    path("<int:peer_id>/certificate.pem", views.certificate_pem, name="certificate"),
    path("<int:peer_id>/revoke/", views.revoke, name="revoke"),
    path("<int:peer_id>/renew/", views.renew, name="renew"),
    path("approvals/", admin_views.approval_queue, name="queue"),
    path("approvals/bulk-approve/", admin_views.bulk_approve, name="bulk-approve"),
    path("approvals/<int:peer_id>/", admin_views.approval_detail, name="approval"),
    path("approvals/<int:peer_id>/approve/", admin_views.approve, name="approve"),
    path("approvals/<int:peer_id>/reject/", admin_views.reject, name="reject"),
    path("policy/", admin_views.policy_edit, name="policy"),
]
