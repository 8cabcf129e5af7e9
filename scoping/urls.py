from django.urls import path

from scoping import views

app_name = "scoping"

urlpatterns = [
    path("issues/", views.issue_list, name="issue-list"),
    path("sync/", views.sync_status, name="sync-status"),
]
