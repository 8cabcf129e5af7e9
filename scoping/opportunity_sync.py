"""The scoping side of a Salesforce sync: the opportunities issues refer to, and the issues it moved."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.db.models import Q, QuerySet

from opportunities.choices import SyncKind
from opportunities.models import Opportunity, SyncRun
from opportunities.salesforce_sync import pull_opportunities
from psplan.audit import ChangeSource
from scoping.em_linking import link_engagement_managers
from scoping.links import issue_iid_in, opportunity_ids_in
from scoping.models import ScopingIssue
from scoping.services import refresh_issues

# Past this many changed opportunities, refreshing every issue is cheaper than working out which.
REFRESH_ALL_ABOVE = 2000


def sync_salesforce(
    *, full: bool = False, progress: Callable[[int], None] | None = None, link_ems: bool = True
) -> SyncRun:
    """One Salesforce pull, then the issues whose links moved refreshed and new EMs linked to GitLab.

    Returns the pull's SyncRun. With Salesforce not configured it returns a SKIPPED run saying so
    and contacts nothing. Raises SalesforceUnavailable (SalesforceRateLimited when the API limit is
    exhausted or backing off) or another SalesforceError after recording it on the run.
    `progress` is called with the number of opportunities each batch mirrored; a dry run passes
    `link_ems=False` so that it only reads.
    """
    if not settings.SALESFORCE_ENABLED:
        return SyncRun.skipped(
            SyncKind.SALESFORCE_FULL if full else SyncKind.SALESFORCE_INCREMENTAL,
            "Salesforce is not configured: set SALESFORCE_INSTANCE_URL and SALESFORCE_ACCESS_TOKEN "
            "(or SALESFORCE_USERNAME and SALESFORCE_PASSWORD)",
        )
    references = _references()
    extra_ids = {oid for ids in references.values() for oid in ids}
    result = pull_opportunities(full=full, extra_ids=extra_ids, progress=progress)
    issues = _affected_issues(result.changed_ids, references)
    refreshed = refresh_issues(issues=issues, source=ChangeSource.SALESFORCE) if issues is not None else 0
    if refreshed:
        result.run.counts = {**result.run.counts, "issues_refreshed": refreshed}
        result.run.save(update_fields=["counts"])
    if link_ems and settings.GITLAB_ENABLED:
        link_engagement_managers()
    return result.run


def _references() -> dict[int, list[str]]:
    """Issue pk → the opportunity ids its description names."""
    rows = ScopingIssue.objects.current().exclude(description="").values_list("pk", "description")
    return {pk: ids for pk, text in rows.iterator(chunk_size=2000) if (ids := opportunity_ids_in(text))}


def _affected_issues(changed_ids: set[str], references: dict[int, list[str]]) -> QuerySet | None:
    """Issues linked to, linked from, or naming an opportunity that changed; None when there are none."""
    if not changed_ids:
        return None
    if len(changed_ids) > REFRESH_ALL_ABOVE:
        return ScopingIssue.objects.current()
    changed15 = {oid[:15] for oid in changed_ids}
    naming = [pk for pk, ids in references.items() if any(oid[:15] in changed15 for oid in ids)]
    opportunities = Opportunity.objects.filter(salesforce_id__in=changed_ids)
    links = opportunities.exclude(scoping_issue_link="").values_list("scoping_issue_link", flat=True)
    iids = {iid for link in links if (iid := issue_iid_in(link)) is not None}
    return ScopingIssue.objects.filter(Q(pk__in=naming) | Q(iid__in=iids) | Q(opportunity__in=opportunities))
