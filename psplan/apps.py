from __future__ import annotations

from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in


class PSPlanConfig(AppConfig):
    name = "psplan"
    verbose_name = "PS Plan"

    def ready(self) -> None:
        from psplan.middleware import mark_session_seen  # middleware imports models-free code only

        user_logged_in.connect(mark_session_seen, dispatch_uid="psplan-session-seen")
