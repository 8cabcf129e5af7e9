"""Admin for the Salesforce mirror. Fields that copy Salesforce are read-only; the PS section goes through
the same service as the pages (history, write-back to Salesforce)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models, transaction

from opportunities.models import (
    Account,
    Opportunity,
    OpportunityChange,
    SalesforceWrite,
    SyncRun,
    Territory,
    TerritoryAssignment,
)
from opportunities.services import PS_FIELDS, update_ps_fields
from psplan.admin import ReadOnlyAdmin
from psplan.audit import ChangeSource


class TerritoryAssignmentInline(admin.TabularInline):
    model = TerritoryAssignment
    extra = 1
    autocomplete_fields = ["engagement_manager"]


@admin.register(Territory)
class TerritoryAdmin(admin.ModelAdmin):
    list_display = ["name", "segment"]
    list_filter = ["segment"]
    search_fields = ["name"]
    inlines = [TerritoryAssignmentInline]


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["name", "sales_territory", "territory", "salesforce_id"]
    search_fields = ["name", "salesforce_id", "sales_territory"]
    list_select_related = ["territory"]


@admin.register(Opportunity)
class OpportunityAdmin(admin.ModelAdmin):
    list_display = ["name", "account", "stage_name", "close_date", "engagement_manager", "em_confidence"]
    list_filter = ["em_confidence", "is_closed", "is_won", "close_quarter"]
    search_fields = ["name", "salesforce_id", "account__name"]
    list_select_related = ["account", "engagement_manager"]
    # A link typed without a scheme is a GitLab issue, which is served over HTTPS.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fields = [
        "salesforce_id",
        "name",
        "account",
        "stage_name",
        "forecast_category",
        "close_date",
        "amount",
        "proserv_amount",
        "ps_value",
        "owner_name",
        *PS_FIELDS,
        "refused_link",
    ]
    readonly_fields = [name for name in fields if name not in PS_FIELDS]
    autocomplete_fields = ["engagement_manager"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @transaction.atomic
    def save_model(self, request, obj: Opportunity, form, change: bool) -> None:
        """The PS section through its service: history and a write-back to Salesforce come with it."""
        opportunity = Opportunity.objects.select_for_update().get(pk=obj.pk)
        values = {name: form.cleaned_data[name] for name in PS_FIELDS if name in form.changed_data}
        try:
            update_ps_fields(opportunity=opportunity, actor=request.user, source=ChangeSource.ADMIN, **values)
        except ValidationError as exc:
            messages.error(request, f"Not saved: {'; '.join(exc.messages)}")


@admin.register(OpportunityChange)
class OpportunityChangeAdmin(ReadOnlyAdmin):
    list_display = [
        "changed_at",
        "opportunity",
        "field",
        "old_value",
        "new_value",
        "source",
        "actor",
        "actor_name",
    ]
    list_filter = ["source", "field"]
    search_fields = ["opportunity__name", "opportunity__salesforce_id", "actor__username"]


@admin.register(SalesforceWrite)
class SalesforceWriteAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "opportunity",
        "status",
        "source",
        "attempts",
        "created_by",
        "created_at",
        "last_error",
    ]
    list_filter = ["status", "source"]


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = ["kind", "started_at", "finished_at", "status", "error"]
    list_filter = ["kind", "status"]
