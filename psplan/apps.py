from __future__ import annotations

from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in


class PSPlanConfig(AppConfig):
    name = "psplan"
    verbose_name = "PS Plan"

    def ready(self) -> None:
        # Imported here: it loads django.contrib.auth, which needs the app registry ready.
        from psplan.middleware import mark_session_seen

        user_logged_in.connect(mark_session_seen, dispatch_uid="psplan-session-seen")
