from django.urls import path

from scoping import views, webhooks

app_name = "scoping"

urlpatterns = [
    path("home/", views.home, name="home"),
    path("my-work/", views.my_work_page, name="my-work"),
    path("my-work/digest/", views.weekly_digest, name="weekly-digest"),
    path("issues/", views.issue_list, name="issue-list"),
    path("issues/<int:iid>/", views.issue_detail, name="issue-detail"),
    path("issues/<int:iid>/edit/", views.edit_issue, name="edit-issue"),
    path("issues/<int:iid>/keep-open/", views.keep_open, name="keep-open"),
    path("issues/<int:iid>/stage/", views.move_issue, name="move-issue"),
    path("issues/<int:iid>/em-status/", views.set_em_status, name="set-em-status"),
    path("boards/", views.board, name="board"),
    path("triage/", views.triage, name="triage"),
    path("triage/accept/", views.accept_suggestions, name="accept-suggestions"),
    path("triage/<int:iid>/", views.triage_issue, name="triage-issue"),
    path("triage/<int:iid>/undo/", views.undo_triage, name="undo-triage"),
    path("changes/", views.changes, name="changes"),
    path("sync/", views.sync_status, name="sync-status"),
    path("sync/retry/", views.retry_writes, name="retry-writes"),
    path("webhooks/gitlab/", webhooks.gitlab_webhook, name="gitlab-webhook"),
]
