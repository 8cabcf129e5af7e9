"""Linking engagement managers to GitLab users, as CONTRACT.md says: by e-mail where GitLab shows one,
else by full name among the project's members, else by an admin (the data-quality page and admin
list every EM PS Plan could not link, with the candidates it found)."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from opportunities.choices import SyncKind
from opportunities.models import EngagementManager, SyncRun
from scoping.gitlab_client import GitLabClient, GitLabError, GitLabUser
from scoping.models import ScopingIssue
from scoping.services import refresh_issues

logger = logging.getLogger(__name__)

# An EM PS Plan could not link is looked up again after this long (or when Salesforce changes them).
RECHECK_AFTER = timedelta(days=1)


class LinkError(Exception):
    """The GitLab user cannot be linked to this EM; the message says why."""


def link_engagement_managers(*, client: GitLabClient | None = None) -> SyncRun | None:
    """Look up a GitLab user for every active EM without one; None when there was nobody to look up.

    A GitLab failure is recorded on the run and not raised: linking waits for the next sync.
    """
    due = (
        EngagementManager.objects.active()
        .unlinked()
        .filter(
            Q(gitlab_link_checked_at__isnull=True)
            | Q(gitlab_link_checked_at__lt=timezone.now() - RECHECK_AFTER)
        )
    )
    unlinked = list(due)
    if not unlinked:
        return None
    counts: Counter[str] = Counter(linked=0, ambiguous=0, not_found=0)
    with SyncRun.running(SyncKind.EM_LINKING) as run:
        try:
            with client or GitLabClient.from_settings() as gitlab:
                matcher = _Matcher(gitlab)
                for em in unlinked:
                    counts[matcher.link(em)] += 1
        except GitLabError as exc:
            run.finish(counts=counts, error=exc)
            return run
        if counts["linked"]:
            refresh_issues(issues=ScopingIssue.objects.current().exclude(assignee_usernames=[]))
        run.finish(counts=counts)
    return run


class _Matcher:
    """One linking run: the client and the project's members, read once."""

    def __init__(self, client: GitLabClient) -> None:
        self.client = client
        self._members: list[GitLabUser] | None = None

    def link(self, em: EngagementManager) -> str:
        """Link one EM if exactly one GitLab user matches; returns linked, ambiguous or not_found."""
        found = self.client.find_user(email=em.email) if em.email else None
        candidates = [found] if found else self._members_named(em.name)
        if len(candidates) == 1:
            try:
                link_to_gitlab_user(engagement_manager=em, user=candidates[0])
                return "linked"
            except LinkError as exc:
                _note_problem(em, str(exc), [])
                return "not_found"
        if candidates:
            names = ", ".join(f"@{user.username}" for user in candidates)
            _note_problem(em, f"{len(candidates)} project members are named {em.name!r}: {names}", candidates)
            return "ambiguous"
        why = f"no GitLab user shows the e-mail {em.email}" if em.email else "Salesforce gives no e-mail"
        _note_problem(em, f"Not linked: {why}, and no project member is named {em.name!r}", [])
        return "not_found"

    def _members_named(self, name: str) -> list[GitLabUser]:
        if self._members is None:
            self._members = self.client.project_member_users()
        wanted = _name_key(name)
        return [member for member in self._members if wanted and _name_key(member.name) == wanted]


def _name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def _note_problem(em: EngagementManager, problem: str, candidates: list[GitLabUser]) -> None:
    em.gitlab_link_problem = problem
    em.gitlab_link_candidates = [{"id": u.id, "username": u.username, "name": u.name} for u in candidates]
    em.gitlab_link_checked_at = timezone.now()
    em.save(update_fields=["gitlab_link_problem", "gitlab_link_candidates", "gitlab_link_checked_at"])


@transaction.atomic
def link_to_gitlab_user(*, engagement_manager: EngagementManager, user: GitLabUser) -> EngagementManager:
    """Link an EM to a GitLab user (found by PS Plan or chosen by an admin); the issues follow."""
    taken = (
        EngagementManager.objects.filter(gitlab_username__iexact=user.username)
        .exclude(pk=engagement_manager.pk)
        .first()
    )
    if taken is not None:
        raise LinkError(f"@{user.username} is already linked to {taken}")
    engagement_manager.gitlab_username, engagement_manager.gitlab_user_id = user.username, user.id
    engagement_manager.gitlab_link_problem, engagement_manager.gitlab_link_candidates = "", []
    engagement_manager.gitlab_link_checked_at = timezone.now()
    engagement_manager.save(
        update_fields=[
            "gitlab_username",
            "gitlab_user_id",
            "gitlab_link_problem",
            "gitlab_link_candidates",
            "gitlab_link_checked_at",
        ]
    )
    return engagement_manager


def link_by_username(*, engagement_manager: EngagementManager, username: str) -> EngagementManager:
    """An admin's one-step fix: link to the GitLab user with this username (looked up in GitLab)."""
    with GitLabClient.from_settings() as client:
        user = client.user_by_username(username.strip().lstrip("@"))
    if user is None:
        raise LinkError(f"GitLab has no user @{username.strip().lstrip('@')}")
    linked = link_to_gitlab_user(engagement_manager=engagement_manager, user=user)
    refresh_issues(issues=ScopingIssue.objects.current().exclude(assignee_usernames=[]))
    return linked
