"""The database bench/load.py measures: made in its own process, before the server starts.

    DATABASE_URL=postgres://… DJANGO_SETTINGS_MODULE=bench.load_settings python -m bench.load_data

Creates the database named in DATABASE_URL, migrates it, collects static files into STATIC_ROOT and fills
it the way the syncs would: 60 engagement managers with territories, 10,000 Salesforce opportunities and
10,000 GitLab scoping issues in every stage, derived and linked by the same service a sync calls
(`refresh_issues`), a history on some issues, and 50 people who sign in (40 EMs, 10 leaders), each with
an API token. Prints what the load test needs as one JSON object.
"""

from __future__ import annotations

import json
import os
import random
import secrets
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

ENGAGEMENT_MANAGERS = 60
SIGNED_IN_EMS = 40
LEADERS = 10
ACCOUNTS_PER_TERRITORY = 25
RECORDS = 10_000  # opportunities, and scoping issues: one each per deal
OPEN = 2_000  # the first RECORDS are open deals with open issues; the rest closed over two years
ISSUES_WITH_HISTORY = 200


def create_database() -> None:
    """DATABASE_URL's database, created through the cluster's maintenance database."""
    import psycopg

    url = urlsplit(os.environ["DATABASE_URL"])
    name = url.path.lstrip("/")
    maintenance = urlunsplit(url._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')


def add_people() -> tuple[str, list, list]:
    """EMs with a primary and a backup territory each; the first SIGNED_IN_EMS and LEADERS sign in."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group

    from opportunities.choices import AssignmentRole, Segment
    from opportunities.models import Account, EngagementManager, Territory, TerritoryAssignment
    from psplan.permissions import ENGAGEMENT_MANAGERS_GROUP

    password = secrets.token_urlsafe(16)
    hashed = make_password(password)  # once: hashing 50 times would take longer than the data
    users = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"em{n:02d}", password=hashed) for n in range(SIGNED_IN_EMS)]
        + [get_user_model()(username=f"leader{n}", password=hashed) for n in range(LEADERS)]
    )
    Group.objects.create(name=ENGAGEMENT_MANAGERS_GROUP).user_set.add(*users[:SIGNED_IN_EMS])
    segments = list(Segment)
    ems = EngagementManager.objects.bulk_create(
        EngagementManager(
            name=f"Engagement Manager {n:02d}",
            email=f"em{n:02d}@example.com",
            salesforce_user_id=f"005{n:012d}AAA",
            gitlab_username=f"em{n:02d}",
            gitlab_user_id=5000 + n,
            user=users[n] if n < SIGNED_IN_EMS else None,
        )
        for n in range(ENGAGEMENT_MANAGERS)
    )
    territories = Territory.objects.bulk_create(
        Territory(name=f"Territory {n:02d}", segment=segments[n % len(segments)])
        for n in range(ENGAGEMENT_MANAGERS)
    )
    TerritoryAssignment.objects.bulk_create(
        TerritoryAssignment(territory=territory, engagement_manager=ems[(n + shift) % len(ems)], role=role)
        for n, territory in enumerate(territories)
        for shift, role in ((0, AssignmentRole.PRIMARY), (1, AssignmentRole.BACKUP))
    )
    accounts = Account.objects.bulk_create(
        Account(
            salesforce_id=f"001{n:012d}AAA",
            name=f"Customer {n}",
            sales_territory=territories[n % len(territories)].name,
            territory=territories[n % len(territories)],
        )
        for n in range(ACCOUNTS_PER_TERRITORY * len(territories))
    )
    return password, users, accounts


def _closed_days_ago(n: int) -> int:
    """Closed deals and their issues spread over two years."""
    return (n * 7) % 720 + 1


_CLOSED_STAGE_NAMES = {"won": "Closed Won", "lost": "Closed Lost", "none": "Closed Lost"}


def _outcome(n: int) -> str:
    """Closed deals: two in five won, two lost, one closed without an outcome (no PS needed)."""
    return ("won", "won", "lost", "lost", "none")[n % 5]


def _territory_ems() -> dict:
    """(territory id, role) -> its EM."""
    from opportunities.models import TerritoryAssignment

    return {
        (a.territory_id, a.role): a.engagement_manager
        for a in TerritoryAssignment.objects.select_related("engagement_manager")
    }


def add_opportunities(accounts: list) -> list:
    """RECORDS opportunities of the accounts' territories' EMs; OPEN of them still open."""
    from django.conf import settings
    from django.utils import timezone

    from opportunities.choices import EMConfidence
    from opportunities.models import Opportunity
    from psplan.fiscal import quarter_code

    assigned = _territory_ems()
    today, now, confidences = timezone.localdate(), timezone.now(), list(EMConfidence)
    customers = random.Random(11)  # any customer may buy, whatever the deal's number
    rows = []
    for n in range(RECORDS):
        account, is_open = customers.choice(accounts), n < OPEN
        close_date = today + timedelta(days=n % 270 if is_open else -_closed_days_ago(n))
        # Every twentieth deal has no EM in Salesforce; every thirtieth names the backup, not the primary.
        em = None if n % 20 == 0 else assigned[account.territory_id, "backup" if n % 30 == 1 else "primary"]
        confidence = confidences[n % len(confidences)]
        rows.append(
            Opportunity(
                salesforce_id=f"006{n:012d}AAA",
                name=f"{account.name} - Deal {n}",
                account=account,
                stage_name="3-Technical Evaluation" if is_open else _CLOSED_STAGE_NAMES[_outcome(n)],
                is_closed=not is_open,
                is_won=not is_open and _outcome(n) == "won",
                close_date=close_date,
                close_quarter=quarter_code(close_date),
                amount=Decimal(50_000 + (n * 37) % 900_000),
                proserv_amount=Decimal(10_000 + (n * 13) % 150_000) if n % 5 else None,
                ps_value=Decimal(15_000 + (n * 11) % 90_000) if n % 3 else None,
                engagement_manager=em,
                em_confidence=confidence,
                em_confidence_rationale="Budget moves to next year" if confidence in ("Red", "Amber") else "",
                # Two in three deals link their issue; the issue names the deal in three of four.
                scoping_issue_link=f"{settings.GITLAB_URL}/{settings.GITLAB_PROJECT}/-/issues/{n + 1}"
                if n % 3
                else "",
                system_modstamp=now,
                synced_at=now,
            )
        )
    return Opportunity.objects.bulk_create(rows, batch_size=2_000)


def _issue_labels(n: int, opportunity, *, untriaged: bool) -> list[str]:
    from django.conf import settings

    from psplan.fiscal import quarter_code
    from scoping.choices import Stage
    from scoping.labels import close_qtr_label, em_status_label, segment_label, workflow_label

    if n < OPEN:
        open_stages = [s for s in Stage if s not in Stage.closing()]
        stage = open_stages[n % len(open_stages)]
    else:
        stage = {"won": Stage.CLOSED_WON, "lost": Stage.CLOSED_LOST, "none": Stage.CLOSED}[_outcome(n)]
    labels = [settings.GITLAB_SCOPING_LABEL, *filter(None, [workflow_label(stage)])]
    if not untriaged:
        labels.append(segment_label(opportunity.account.territory.segment))
    if n < OPEN and n % 3 == 0:
        labels.append(em_status_label(["Waiting", "ToDo"][n % 2]))
    if stage in Stage.outcomes() and n % 50:  # one outcome in fifty lacks its quarter: a data-quality find
        labels.append(close_qtr_label(quarter_code(opportunity.close_date)))
    return labels


def add_issues(opportunities: list) -> None:
    """One issue per opportunity, assigned in GitLab to the territory's primary EM, stored as the GitLab
    sync stores them; one open issue in ten is untriaged (no segment label, no assignee)."""
    from django.conf import settings
    from django.utils import timezone

    from scoping.choices import IssueState
    from scoping.models import ScopingIssue
    from scoping.services import derived_label_fields, refresh_issues

    assigned, now, rows = _territory_ems(), timezone.now(), []
    for n, opportunity in enumerate(opportunities):
        untriaged = n < OPEN and n % 10 == 0
        labels = _issue_labels(n, opportunity, untriaged=untriaged)
        state = IssueState.OPENED if n < OPEN else IssueState.CLOSED
        closed_at = None if n < OPEN else now - timedelta(days=_closed_days_ago(n))
        active = closed_at or now - timedelta(days=n % 75, hours=n % 24)
        assignee = None if untriaged else assigned[opportunity.account.territory_id, "primary"]
        # Three issues in four name their deal; two deals in three link back (add_opportunities).
        named = n % 4 != 1
        linked = opportunity if named or opportunity.scoping_issue_link else None
        rows.append(
            ScopingIssue(
                gitlab_id=900_000 + n,
                iid=n + 1,
                title=f"Scoping: {opportunity.name}",
                description=f"Estimate for {opportunity.name}.\n"
                + (f"Opportunity {opportunity.salesforce_id}" if named else "No link yet."),
                web_url=f"{settings.GITLAB_URL}/{settings.GITLAB_PROJECT}/-/issues/{n + 1}",
                state=state,
                labels=labels,
                assignee_usernames=[assignee.gitlab_username] if assignee else [],
                author_username="sales-rep",
                created_at=active - timedelta(days=3 + n % 40),
                updated_at=active,
                last_activity_at=active,
                closed_at=closed_at,
                # What refresh_issues derives, so it has nothing to rewrite (its bulk update of 10,000
                # rows would take minutes); it still finds the data-quality problems.
                engagement_manager=assignee or (linked.engagement_manager if linked else None),
                opportunity=linked,
                **derived_label_fields(labels=labels, state=state),
            )
        )
    ScopingIssue.objects.bulk_create(rows, batch_size=2_000)
    # EM, opportunity link and data-quality problems, derived as after a GitLab sync.
    changed = refresh_issues(quiet_ids=[row.gitlab_id for row in rows])
    assert changed == 0, f"refresh_issues rewrote {changed} issues: add_issues derives them differently"


def add_history() -> None:
    """Busy open issues carry moves made on PS Plan and their delivery, as the issue page shows them."""
    from psplan.queue import WriteStatus, deliveries_deferred
    from scoping.choices import Stage
    from scoping.models import GitLabWrite, ScopingIssue
    from scoping.services import set_issue_stage

    issues = (
        ScopingIssue.objects.open()
        .exclude(engagement_manager__user=None)
        .select_related("engagement_manager__user")
    )
    # Deferred: without a broker each write would start its own in-process delivery run.
    with deliveries_deferred():
        for issue in issues.order_by("iid")[:ISSUES_WITH_HISTORY]:
            for stage in (Stage.STRAWMAN_WIP, Stage.SOW_WIP, issue.stage):
                set_issue_stage(issue=issue, stage=stage, actor=issue.engagement_manager.user)
    GitLabWrite.objects.update(status=WriteStatus.DELIVERED)


def plan(password: str, users: list) -> dict:
    """Who signs in, with which token, and which open issues each EM works on."""
    from opportunities.models import EngagementManager
    from psplan.tokens import create_token
    from scoping.models import ScopingIssue

    open_iids: dict[str, list[int]] = {}
    for username, iid in ScopingIssue.objects.open().values_list(
        "engagement_manager__gitlab_username", "iid"
    ):
        open_iids.setdefault(username or "", []).append(iid)
    em_of = dict(
        EngagementManager.objects.exclude(user=None).values_list("user__username", "gitlab_username")
    )
    return {
        "password": password,
        "records": RECORDS,
        "engagement_managers": sorted(EngagementManager.objects.values_list("gitlab_username", flat=True)),
        "people": [
            {
                "username": user.username,
                "engagement_manager": em_of.get(user.username),
                "token": create_token(user=user, lifetime=None)[1],
                "open_iids": open_iids.get(em_of[user.username], []) if user.username in em_of else [],
            }
            for user in users
        ],
    }


def main() -> None:
    import django

    create_database()
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)
    password, users, accounts = add_people()
    opportunities = add_opportunities(accounts)
    add_issues(opportunities)
    add_history()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(json.dumps(plan(password, users)))


if __name__ == "__main__":
    main()
