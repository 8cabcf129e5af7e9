from django.urls import path

from reporting import views

app_name = "reporting"

urlpatterns = [
    path("win-rate/", views.win_rate, name="win-rate"),
    path("forecast/", views.forecast, name="forecast"),
    path("slipped-deals/", views.slipped_deals, name="slipped-deals"),
    path("calibration/", views.calibration, name="calibration"),
    path("stale/", views.stale_issues, name="stale"),
    path("data-quality/", views.data_quality, name="data-quality"),
    path("audit/", views.audit_trail, name="audit-trail"),
]
