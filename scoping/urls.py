from django.urls import path

from scoping import views, webhooks

app_name = "scoping"

urlpatterns = [
    path("issues/", views.issue_list, name="issue-list"),
    path("issues/<int:iid>/", views.issue_detail, name="issue-detail"),
    path("issues/<int:iid>/stage/", views.move_issue, name="move-issue"),
    path("boards/", views.board, name="board"),
    path("triage/", views.triage, name="triage"),
    path("triage/<int:iid>/", views.triage_issue, name="triage-issue"),
    path("sync/", views.sync_status, name="sync-status"),
    path("sync/retry/", views.retry_writes, name="retry-writes"),
    path("webhooks/gitlab/", webhooks.gitlab_webhook, name="gitlab-webhook"),
]
