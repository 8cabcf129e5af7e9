from django.contrib import admin

from opportunities.models import (
    Account,
    EngagementManager,
    Opportunity,
    OpportunityChange,
    SalesforceWrite,
    SyncRun,
    Territory,
    TerritoryAssignment,
)


class TerritoryAssignmentInline(admin.TabularInline):
    model = TerritoryAssignment
    extra = 1
    autocomplete_fields = ["engagement_manager"]


@admin.register(EngagementManager)
class EngagementManagerAdmin(admin.ModelAdmin):
    list_display = ["name", "email", "gitlab_username", "salesforce_user_id", "user", "active"]
    list_filter = ["active"]
    search_fields = ["name", "email", "gitlab_username"]
    autocomplete_fields = ["user"]


@admin.register(Territory)
class TerritoryAdmin(admin.ModelAdmin):
    list_display = ["name", "segment"]
    list_filter = ["segment"]
    search_fields = ["name"]
    inlines = [TerritoryAssignmentInline]


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["name", "sales_territory", "territory", "salesforce_id"]
    search_fields = ["name", "salesforce_id", "sales_territory"]
    list_select_related = ["territory"]


@admin.register(Opportunity)
class OpportunityAdmin(admin.ModelAdmin):
    list_display = ["name", "account", "stage_name", "close_date", "engagement_manager", "em_confidence"]
    list_filter = ["em_confidence", "is_closed", "is_won", "close_quarter"]
    search_fields = ["name", "salesforce_id", "account__name"]
    list_select_related = ["account", "engagement_manager"]
    raw_id_fields = ["account"]


@admin.register(OpportunityChange)
class OpportunityChangeAdmin(admin.ModelAdmin):
    list_display = ["opportunity", "field", "old_value", "new_value", "changed_at"]
    list_filter = ["field"]
    raw_id_fields = ["opportunity"]


@admin.register(SalesforceWrite)
class SalesforceWriteAdmin(admin.ModelAdmin):
    list_display = ["id", "opportunity", "status", "attempts", "created_by", "created_at", "last_error"]
    list_filter = ["status"]
    raw_id_fields = ["opportunity"]


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    list_display = ["kind", "started_at", "finished_at", "status", "error"]
    list_filter = ["kind", "status"]
