"""The weekly e-mail of "My work", for the users who asked for it."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.utils import timezone

from scoping.models import DigestSubscription
from scoping.workspace import my_work


def send_weekly_digests() -> int:
    """E-mail every subscribed EM their "My work" page as text; returns how many were sent."""
    now = timezone.now()
    sent = 0
    subscriptions = DigestSubscription.objects.select_related("user__engagement_manager").exclude(
        user__email=""
    )
    for subscription in subscriptions:
        engagement_manager = getattr(subscription.user, "engagement_manager", None)
        if engagement_manager is None:
            continue
        work = my_work(engagement_manager, subscription.user, as_of=now)
        body = render_to_string(
            "scoping/my_work_digest.txt",
            {"engagement_manager": engagement_manager, "work": work, "base_url": settings.PSPLAN_BASE_URL},
        )
        send_mail(f"PS Plan: your week, {now:%d %b}", body, None, [subscription.user.email])
        DigestSubscription.objects.filter(pk=subscription.pk).update(last_sent_at=now)
        sent += 1
    return sent


@shared_task
def send_weekly_digest_emails() -> int:
    return send_weekly_digests()
