"""Admin for the scoping mirror. Fields that copy GitLab or Salesforce are read-only here: a change to
them goes through the same services as the pages (history, write-back), never straight to the row."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import transaction

from opportunities.choices import Segment
from opportunities.models import EngagementManager
from psplan.admin import ReadOnlyAdmin
from psplan.audit import ChangeSource
from scoping import services
from scoping.choices import EMStatus, Stage
from scoping.em_linking import LinkError, link_by_username, link_engagement_managers
from scoping.gitlab_client import GitLabError
from scoping.models import (
    DataQualityProblem,
    GitLabWrite,
    IssueChange,
    RuleAction,
    ScopingIssue,
    WebhookDelivery,
)


class ScopingIssueEditForm(forms.ModelForm):
    """The PS fields an admin may change; each goes through its service and is written back to GitLab."""

    new_stage = forms.ChoiceField(label="Stage", choices=Stage.choices, required=False)
    new_segment = forms.ChoiceField(label="Segment", choices=[("", "—"), *Segment.choices], required=False)
    new_em_status = forms.ChoiceField(
        label="EM status", choices=[("", "—"), *EMStatus.choices], required=False
    )

    class Meta:
        model = ScopingIssue
        fields = ["keep_open_until", "keep_open_reason"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        issue = self.instance
        self.initial.update(new_stage=issue.stage, new_segment=issue.segment, new_em_status=issue.em_status)


@admin.register(ScopingIssue)
class ScopingIssueAdmin(admin.ModelAdmin):
    form = ScopingIssueEditForm
    list_display = [
        "iid",
        "title",
        "state",
        "stage",
        "segment",
        "engagement_manager",
        "close_qtr",
        "last_activity_at",
    ]
    list_filter = ["state", "stage", "segment", "em_status", "public_sector"]
    search_fields = ["title", "iid"]
    list_select_related = ["engagement_manager"]
    fields = [
        "iid",
        "title",
        "web_url",
        "state",
        "labels",
        "new_stage",
        "new_segment",
        "new_em_status",
        "engagement_manager",
        "opportunity",
        "close_qtr",
        "public_sector",
        "last_activity_at",
        "keep_open_until",
        "keep_open_reason",
    ]
    readonly_fields = [
        "iid",
        "title",
        "web_url",
        "state",
        "labels",
        "engagement_manager",
        "opportunity",
        "close_qtr",
        "public_sector",
        "last_activity_at",
    ]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @transaction.atomic
    def save_model(self, request, obj: ScopingIssue, form, change: bool) -> None:
        """Each changed PS field through its service: the history and the GitLab write come with it."""
        issue = ScopingIssue.objects.select_for_update().get(pk=obj.pk)
        data, edit = form.cleaned_data, {"issue": issue, "actor": request.user, "source": ChangeSource.ADMIN}
        if data["new_stage"] and data["new_stage"] != issue.stage:
            services.set_issue_stage(stage=data["new_stage"], **edit)
        if data["new_segment"] != issue.segment:
            services.set_issue_segment(segment=data["new_segment"] or None, **edit)
        if data["new_em_status"] != issue.em_status:
            services.set_issue_em_status(em_status=data["new_em_status"] or None, **edit)
        if (data["keep_open_until"], data["keep_open_reason"]) != (
            issue.keep_open_until,
            issue.keep_open_reason,
        ):
            try:
                services.set_keep_open(
                    until=data["keep_open_until"], reason=data["keep_open_reason"] or "", **edit
                )
            except ValueError as exc:
                messages.error(request, str(exc))


class EngagementManagerLinkForm(forms.ModelForm):
    link_username = forms.CharField(
        label="Link to GitLab username",
        required=False,
        help_text="Looked up in GitLab; the EM's issues follow. Leave empty to keep the current link.",
    )

    class Meta:
        model = EngagementManager
        fields = ["name", "email", "user", "active"]


# Registered here rather than with the other opportunities models: linking needs GitLab.
@admin.register(EngagementManager)
class EngagementManagerAdmin(admin.ModelAdmin):
    """EMs with their GitLab link: set by PS Plan when it finds exactly one match, else fixed here in one step."""

    form = EngagementManagerLinkForm
    list_display = ["name", "email", "gitlab_username", "active", "gitlab_link_problem"]
    list_filter = ["active"]
    search_fields = ["name", "email", "gitlab_username"]
    autocomplete_fields = ["user"]
    readonly_fields = [
        "gitlab_username",
        "gitlab_user_id",
        "salesforce_user_id",
        "gitlab_link_problem",
        "gitlab_link_candidates",
    ]
    actions = ["look_up_gitlab_users"]

    def save_model(self, request, obj: EngagementManager, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        username = form.cleaned_data.get("link_username", "").strip()
        if not username:
            return
        try:
            link_by_username(engagement_manager=obj, username=username)
        except (LinkError, GitLabError) as exc:
            messages.error(request, f"{obj} is not linked: {exc}")
        else:
            messages.success(request, f"{obj} is linked to GitLab user @{obj.gitlab_username}.")

    @admin.action(description="Look their GitLab users up again")
    def look_up_gitlab_users(self, request, queryset) -> None:
        queryset.update(gitlab_link_checked_at=None)
        run = link_engagement_managers()
        if run is not None:
            messages.info(request, f"GitLab lookup: {run.counts or run.error}")


@admin.register(DataQualityProblem)
class DataQualityProblemAdmin(ReadOnlyAdmin):
    list_display = ["kind", "issue", "opportunity", "message", "detected_at"]
    list_filter = ["kind"]


@admin.register(GitLabWrite)
class GitLabWriteAdmin(ReadOnlyAdmin):
    list_display = ["id", "issue", "status", "source", "attempts", "created_by", "created_at", "last_error"]
    list_filter = ["status", "source"]


@admin.register(IssueChange)
class IssueChangeAdmin(ReadOnlyAdmin):
    list_display = ["changed_at", "issue", "field", "old_value", "new_value", "source", "actor", "actor_name"]
    list_filter = ["source", "field"]
    search_fields = ["issue__iid", "actor__username", "actor_name"]


@admin.register(RuleAction)
class RuleActionAdmin(ReadOnlyAdmin):
    list_display = ["issue", "rule", "reason", "close_qtr", "applied_at"]
    list_filter = ["rule"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["delivery_key", "event", "received_at", "processed_at", "error"]
    list_filter = ["event"]
