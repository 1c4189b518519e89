from django.urls import path

from bundles import views

app_name = "bundles"
urlpatterns = [
    path("peer/<int:peer_id>/", views.bundle_page, name="bundle"),
    path("peer/<int:peer_id>/download/", views.bundle_download, name="download"),
    path("peer/<int:peer_id>/link/", views.link_create, name="link-create"),
    path("link/<str:token>/", views.link_redeem, name="link"),
    path("gateway/", views.gateway_page, name="gateway"),
    path("profile/", views.profile_edit, name="profile"),
]
