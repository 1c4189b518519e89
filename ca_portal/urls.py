from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView

from authority import otp_views
from authority import views as authority_views
from ca_portal import ops
from ca_portal import views as site_views

api_patterns: list[URLPattern | URLResolver] = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("v1/", include("authority.api")),
    path("v1/", include("enrollment.api")),
    path("v1/", include("bundles.api")),
    path("v1/", include("audit.api")),
]

urlpatterns = [
    path("", site_views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("otp/setup/", otp_views.otp_setup, name="otp-setup"),
    path("otp/verify/", otp_views.otp_verify, name="otp-verify"),
    path("ca.pem", authority_views.ca_pem, name="ca-pem"),
    path("crl.pem", authority_views.crl_pem, name="crl-pem"),
    path("crl.der", authority_views.crl_der, name="crl-der"),
    path("ca/", authority_views.ca_detail, name="ca-detail"),
    path("healthz", authority_views.healthz, name="healthz"),
    path("readyz", ops.readyz, name="readyz"),
    path("metrics", ops.metrics_view, name="metrics"),
    path("peers/", include("enrollment.urls")),
    path("bundles/", include("bundles.urls")),
    path("audit/", include("audit.urls")),
    path("api/", include(api_patterns)),
    path(".well-known/est/", include("enrollment.est")),  # RFC 7030
]
