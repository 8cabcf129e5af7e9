"""Staff see and revoke API tokens here, but never a key: PS Plan only has their digests."""

from __future__ import annotations

import knox.admin  # noqa: F401  (registers knox's own admin first, so it can be replaced)
from django.contrib import admin
from knox.models import AuthToken

from psplan.models import ApiToken

admin.site.unregister(AuthToken)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records PS Plan keeps for itself (queues, history, runs): looked at in admin, never edited there."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Read-only rows; deleting one (or several, with the list's action) revokes them at once."""

    list_display = ("token_key", "user", "created", "expiry")
    list_select_related = ("user",)
    search_fields = ("user__username", "token_key")
    fields = ("token_key", "user", "created", "expiry")
    date_hierarchy = "created"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
