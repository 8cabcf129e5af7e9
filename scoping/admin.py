from django.contrib import admin

from scoping.models import (
    DataQualityProblem,
    GitLabWrite,
    KeepOpenOverride,
    RuleAction,
    ScopingIssue,
    WebhookDelivery,
)


@admin.register(ScopingIssue)
class ScopingIssueAdmin(admin.ModelAdmin):
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
    raw_id_fields = ["opportunity", "engagement_manager"]


@admin.register(DataQualityProblem)
class DataQualityProblemAdmin(admin.ModelAdmin):
    list_display = ["kind", "issue", "opportunity", "message", "detected_at"]
    list_filter = ["kind"]
    raw_id_fields = ["issue", "opportunity"]


@admin.register(GitLabWrite)
class GitLabWriteAdmin(admin.ModelAdmin):
    list_display = ["id", "issue", "status", "attempts", "created_by", "created_at", "last_error"]
    list_filter = ["status"]
    raw_id_fields = ["issue"]


@admin.register(KeepOpenOverride)
class KeepOpenOverrideAdmin(admin.ModelAdmin):
    list_display = ["issue", "until", "set_by", "set_at"]
    raw_id_fields = ["issue"]


@admin.register(RuleAction)
class RuleActionAdmin(admin.ModelAdmin):
    list_display = ["issue", "rule", "reason", "close_qtr", "applied_at"]
    list_filter = ["rule"]
    raw_id_fields = ["issue"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["delivery_key", "event", "received_at", "processed_at", "error"]
    list_filter = ["event"]
