"""The auditor pages, included by the project URLconf at ``audit/`` (namespace ``audit``)."""

from django.urls import path

from audit import views

app_name = "audit"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("certificates/", views.certificate_list, name="certificates"),
    path("certificates/export.csv", views.export_csv, name="export-csv"),
    path("certificates/export.json", views.export_json, name="export-json"),
    path("certificates/<str:serial>/", views.certificate_detail, name="certificate"),
    path("log/", views.audit_log, name="log"),
    path("log/verify/", views.audit_log_verify, name="verify"),
    path("log/checkpoint.txt", views.audit_checkpoint_download, name="checkpoint"),
]
