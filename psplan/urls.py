from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from psplan import api_urls, sso, tokens, views
from psplan.api import APIDefaults

api_v1 = [path("api/v1/", include((api_urls.urlpatterns, "api"), namespace="api"))]

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="scoping:issue-list", permanent=False)),
    path("login/", views.SignInView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("sso/login/", sso.start, name="sso-login"),
    path("sso/callback/", sso.callback, name="sso-callback"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    *api_v1,
    # Only /api/v1/ is described: other DRF views (the webhook) are not part of the public contract.
    # Token first, so an anonymous caller gets 401 with a challenge, like the API itself.
    path(
        "api/schema/",
        SpectacularAPIView.as_view(
            patterns=api_v1, authentication_classes=APIDefaults.authentication_classes
        ),
        name="api-schema",
    ),
    # The split view serves its start-up script as a file: the Content-Security-Policy allows no inline script.
    path(
        "api/docs/",
        login_required(
            SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="psplan/api_docs.html")
        ),
        name="api-docs",
    ),
    path("api/token/", tokens.api_token, name="api-token"),
    path("opportunities/", include("opportunities.urls")),
    path("reports/", include("reporting.urls")),
    path("", include("scoping.urls")),
]
