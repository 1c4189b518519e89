from django.urls import path

from bundles import sync_views, views

app_name = "bundles"
urlpatterns = [
    path("peer/<int:peer_id>/", views.bundle_page, name="bundle"),
    path("peer/<int:peer_id>/download/", views.bundle_download, name="download"),
    path("peer/<int:peer_id>/link/", views.link_create, name="link-create"),
    path("link/<str:token>/", views.link_redeem, name="link"),
    path("gateway/", views.gateway_page, name="gateway"),
    path("gateway/status.json", views.render_status, name="render-status"),
    path("gateway/sync-token/", sync_views.sync_token_create, name="sync-token-create"),
    path("gateway/sync-token/revoke/", sync_views.sync_token_revoke, name="sync-token-revoke"),
    path("profile/", views.profile_edit, name="profile"),
]
