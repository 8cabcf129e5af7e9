from django.urls import path

from reporting import views

app_name = "reporting"

urlpatterns = [
    path("win-rate/", views.win_rate, name="win-rate"),
    path("forecast/", views.forecast, name="forecast"),
    path("data-quality/", views.data_quality, name="data-quality"),
]
