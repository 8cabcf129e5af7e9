from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "psplan.settings")

app = Celery("psplan")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The weekly "My work" e-mail lives beside the page it renders.
app.autodiscover_tasks(related_name="digest")
