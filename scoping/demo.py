"""Realistic demo data: EMs, territories, accounts, opportunities and scoping issues in every stage."""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from opportunities.choices import AssignmentRole, EMConfidence, Segment
from opportunities.models import Account, EngagementManager, Opportunity, Territory, TerritoryAssignment
from psplan.fiscal import FiscalQuarter, add_months
from psplan.permissions import ENGAGEMENT_MANAGERS_GROUP
from scoping import labels as label_rules
from scoping.choices import EMStatus, IssueState, Stage
from scoping.models import RuleAction, ScopingIssue
from scoping.rules import apply_rules
from scoping.services import refresh_issues

ENGAGEMENT_MANAGERS = [
    ("Priya Raman", "praman", [Segment.ENT_APAC, Segment.MM_APAC]),
    ("Tom Becker", "tbecker", [Segment.ENT_EMEA]),
    ("Aoife Walsh", "awalsh", [Segment.MM_EMEA]),
    ("Marcus Lee", "mlee", [Segment.ENT_EAST]),
    ("Dana Whitfield", "dwhitfield", [Segment.ENT_WEST]),
    ("Luis Ortega", "lortega", [Segment.MM_EAST, Segment.SMB]),
    ("Hannah Kim", "hkim", [Segment.MM_WEST]),
    ("Sam Okafor", "sokafor", []),  # the team's floater: backup everywhere
]

TERRITORIES = {
    Segment.ENT_APAC: ["APAC - Enterprise - ANZ", "APAC - Enterprise - Japan"],
    Segment.ENT_EAST: ["AMER - Enterprise - East - Northeast", "AMER - Enterprise - East - Southeast"],
    Segment.ENT_WEST: ["AMER - Enterprise - West - NorCal", "AMER - Enterprise - West - PacNW"],
    Segment.ENT_EMEA: ["EMEA - Enterprise - DACH", "EMEA - Enterprise - UK&I"],
    Segment.MM_APAC: ["APAC - Mid-Market"],
    Segment.MM_EAST: ["AMER - Mid-Market - East"],
    Segment.MM_EMEA: ["EMEA - Mid-Market - North", "EMEA - Mid-Market - South"],
    Segment.MM_WEST: ["AMER - Mid-Market - West"],
    Segment.SMB: ["AMER - SMB", "EMEA - SMB"],
}

ACCOUNT_WORDS = [
    "Acme",
    "Northwind",
    "Contoso",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Hooli",
    "Pied",
    "Vandelay",
    "Wonka",
    "Oceanic",
    "Dunder",
    "Massive",
    "Aperture",
    "Black-Mesa",
    "Gringotts",
    "Monarch",
    "Nakatomi",
    "Weyland",
    "Virtucon",
    "Zorg",
    "Blue-Sun",
    "Sirius",
    "Prestige",
    "Ollivander",
]
ACCOUNT_SUFFIXES = ["Bank", "Health", "Logistics", "Retail", "Energy", "Systems", "Insurance", "Labs"]
PS_OFFERINGS = [
    "GitLab Migration Services",
    "Implementation QuickStart",
    "CI/CD Transformation",
    "Dedicated Implementation",
    "Security & Compliance Enablement",
    "Education Services bundle",
    "Rapid Results Consulting",
]
OPEN_STAGE_NAMES = [
    "1-Discovery",
    "2-Scoping",
    "3-Technical Evaluation",
    "4-Proposal",
    "5-Negotiating",
    "6-Awaiting Signature",
]
OPEN_WORKFLOW = [
    Stage.OPEN,
    Stage.AWAITING_DISCOVERY,
    Stage.STRAWMAN_WIP,
    Stage.ESTIMATE_FEEDBACK,
    Stage.ON_HOLD,
    Stage.SOW_WIP,
    Stage.READY_FOR_APPROVAL,
    Stage.APPROVED,
]

DEMO_USERS = {
    "admin": {"is_staff": True, "is_superuser": True, "first_name": "Ada", "last_name": "Admin"},
    "em": {"first_name": "Priya", "last_name": "Raman"},
    "leader": {"first_name": "Lee", "last_name": "Leadership"},
}


@dataclass
class DemoResult:
    engagement_managers: int
    territories: int
    accounts: int
    opportunities: int
    issues: int
    passwords: dict[str, str]


# Demo issues have GitLab ids above this, far from a real project's.
DEMO_GITLAB_IDS = 900_000


def _salesforce_id(prefix: str, number: int) -> str:
    return f"{prefix}{number:012d}AAA"[:18]


def _aware(day: date, hour: int = 10) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour)))


@transaction.atomic
def seed_demo_data(*, today: date | None = None, reset_passwords: bool = False) -> DemoResult:
    """Create or refresh the demo data set; running it again duplicates nothing."""
    today = today or timezone.localdate()
    rng = random.Random(2026)
    ems = _seed_engagement_managers()
    territories = _seed_territories(ems)
    accounts = _seed_accounts(territories, rng)
    opportunities = _seed_opportunities(accounts, rng, today)
    issue_count = _seed_issues(opportunities, rng, today)
    refresh_issues()
    # The demo's story starts over on each run, so the closing rules apply to it as on a real sync —
    # here only, since the demo has no GitLab — and every page agrees with its own definitions.
    RuleAction.objects.filter(issue__gitlab_id__gt=DEMO_GITLAB_IDS).delete()
    apply_rules(as_of=_aware(today, 12), write_back=False, limit=issue_count)
    passwords = _seed_users(ems[0], reset_passwords=reset_passwords)
    return DemoResult(len(ems), len(territories), len(accounts), len(opportunities), issue_count, passwords)


def _seed_engagement_managers() -> list[EngagementManager]:
    ems = []
    for number, (name, username, _segments) in enumerate(ENGAGEMENT_MANAGERS, start=1):
        em, _ = EngagementManager.objects.update_or_create(
            salesforce_user_id=_salesforce_id("005", number),
            defaults={
                "name": name,
                "email": f"{username}@example.com",
                "gitlab_username": username,
                "gitlab_user_id": 1000 + number,
                "active": True,
            },
        )
        ems.append(em)
    return ems


def _seed_territories(ems: list[EngagementManager]) -> list[Territory]:
    primary_for = {
        segment: ems[i] for i, (_, _, segments) in enumerate(ENGAGEMENT_MANAGERS) for segment in segments
    }
    floater = ems[-1]
    territories = []
    for segment, names in TERRITORIES.items():
        for name in names:
            territory, _ = Territory.objects.update_or_create(name=name, defaults={"segment": segment})
            TerritoryAssignment.objects.update_or_create(
                territory=territory,
                engagement_manager=primary_for[segment],
                defaults={"role": AssignmentRole.PRIMARY},
            )
            TerritoryAssignment.objects.update_or_create(
                territory=territory, engagement_manager=floater, defaults={"role": AssignmentRole.BACKUP}
            )
            territories.append(territory)
    return territories


def _seed_accounts(territories: list[Territory], rng: random.Random) -> list[Account]:
    accounts = []
    for number in range(1, 61):
        territory = territories[number % len(territories)]
        name = (
            f"{ACCOUNT_WORDS[number % len(ACCOUNT_WORDS)]} {ACCOUNT_SUFFIXES[number % len(ACCOUNT_SUFFIXES)]}"
        )
        account, _ = Account.objects.update_or_create(
            salesforce_id=_salesforce_id("001", number),
            defaults={"name": name, "sales_territory": territory.name, "territory": territory},
        )
        accounts.append(account)
    rng.shuffle(accounts)
    return accounts


def _seed_opportunities(accounts: list[Account], rng: random.Random, today: date) -> list[Opportunity]:
    primary_em = {
        a.territory_id: a.engagement_manager
        for a in TerritoryAssignment.objects.filter(role=AssignmentRole.PRIMARY).select_related(
            "engagement_manager"
        )
    }
    opportunities = []
    for number in range(1, 201):
        account = accounts[number % len(accounts)]
        # About 45% are closed, spread over the last six fiscal quarters; the rest close in the next three.
        closed = number % 20 < 9
        close_date = (
            today - timedelta(days=rng.randint(5, 540))
            if closed
            else today + timedelta(days=rng.randint(3, 270))
        )
        won = closed and rng.random() < 0.55
        amount = Decimal(rng.randrange(20, 600) * 500)
        ps_amount = Decimal(rng.randrange(10, 180) * 250)
        confidence = (
            rng.choice(list(EMConfidence)) if not closed else EMConfidence.GREEN if won else EMConfidence.RED
        )
        em = primary_em.get(account.territory_id) if number % 9 else None
        opportunity, _ = Opportunity.objects.update_or_create(
            salesforce_id=_salesforce_id("006", number),
            defaults={
                "name": f"{account.name} - {rng.choice(PS_OFFERINGS)}",
                "account": account,
                "stage_name": ("Closed Won" if won else "Closed Lost")
                if closed
                else rng.choice(OPEN_STAGE_NAMES),
                "forecast_category": ("Closed" if won else "Omitted")
                if closed
                else rng.choice(["Pipeline", "Best Case", "Commit"]),
                "is_closed": closed,
                "is_won": won,
                "close_date": close_date,
                "close_quarter": FiscalQuarter.of(close_date).code,
                "amount": amount,
                "proserv_amount": ps_amount if number % 3 else None,
                "ps_value": ps_amount if number % 3 == 0 and number % 2 else None,
                "owner_salesforce_id": _salesforce_id("005", 100 + number % 12),
                "owner_name": rng.choice(
                    ["Jordan Blake", "Riley Chen", "Morgan Diaz", "Casey Novak", "Avery Patel"]
                ),
                "engagement_manager": em,
                "em_confidence": confidence if em else EMConfidence.GREY,
                "em_confidence_rationale": _rationale(confidence) if em else "",
                "system_modstamp": _aware(min(today, close_date)),
            },
        )
        opportunities.append(opportunity)
    return opportunities


def _rationale(confidence: str) -> str:
    return {
        EMConfidence.RED: "Customer paused budget until next fiscal year.",
        EMConfidence.AMBER: "Technical win secured; procurement timing unclear.",
        EMConfidence.GREEN: "SOW agreed with customer; signature expected this quarter.",
    }.get(confidence, "")


def _seed_issues(opportunities: list[Opportunity], rng: random.Random, today: date) -> int:
    base_url = f"{settings.GITLAB_URL}/{settings.GITLAB_PROJECT}/-/issues"
    now = _aware(today, 12)
    for iid, opportunity in enumerate(opportunities, start=1):
        labels, state, closed_at, last_activity = _issue_story(iid, opportunity, rng, today)
        created = min(last_activity, now - timedelta(days=120)) - timedelta(days=rng.randint(1, 60))
        em = opportunity.engagement_manager
        ScopingIssue.objects.update_or_create(
            iid=iid,
            defaults={
                "gitlab_id": DEMO_GITLAB_IDS + iid,
                "title": f"Scoping: {opportunity.name}",
                "description": (
                    f"Services Calculator estimate for {opportunity.account.name if opportunity.account else 'the customer'}.\n\n"
                    f"Opportunity: {settings.SALESFORCE_INSTANCE_URL or 'https://example.my.salesforce.com'}"
                    f"/lightning/r/Opportunity/{opportunity.salesforce_id}/view"
                    if iid % 25
                    else "Services Calculator estimate; opportunity to be confirmed."
                ),
                "web_url": f"{base_url}/{iid}",
                "state": state,
                "labels": labels,
                "assignee_usernames": [em.gitlab_username] if em and iid % 7 else [],
                "author_username": "services-calculator-bot",
                "created_at": created,
                "updated_at": last_activity,
                "closed_at": closed_at,
                "last_activity_at": last_activity,
            },
        )
    return len(opportunities)


def _issue_story(iid: int, opportunity: Opportunity, rng: random.Random, today: date):
    """Labels, state, closed_at and last activity that fit the opportunity's fate."""
    segment = (
        opportunity.account.territory.segment
        if opportunity.account and opportunity.account.territory
        else None
    )
    labels = [settings.GITLAB_SCOPING_LABEL]
    if iid % 11 == 0:
        labels.append(label_rules.PUBLIC_SECTOR_LABEL)
    if opportunity.is_closed:
        stage = Stage.CLOSED_WON if opportunity.is_won else Stage.CLOSED_LOST
        closed_on = opportunity.close_date + timedelta(days=rng.randint(0, 6))
        labels += [
            label_rules.workflow_label(stage),
            label_rules.close_qtr_label(FiscalQuarter.of(opportunity.close_date).code),
        ]
        if segment:
            labels.append(label_rules.segment_label(segment))
        last_activity = _aware(min(closed_on, today))
        return _with_quirks(iid, labels), IssueState.CLOSED, last_activity, last_activity
    if iid % 40 == 30:  # the customer will not pursue PS: closed without an outcome
        gone_quiet = _aware(today - timedelta(days=rng.randint(10, 90)))
        return labels, IssueState.CLOSED, gone_quiet, gone_quiet
    stage = OPEN_WORKFLOW[iid % len(OPEN_WORKFLOW)]
    labels.append(label_rules.workflow_label(stage))
    if segment and stage != Stage.OPEN:
        labels.append(label_rules.segment_label(segment))
    if stage != Stage.OPEN and iid % 3:
        labels.append(label_rules.em_status_label(EMStatus.TODO if iid % 2 else EMStatus.WAITING))
    # Every sixth open issue has gone quiet for longer than the stale window; a few are about to.
    if iid % 6 == 0:
        days_idle = rng.randint(70, 150)
    elif iid % 6 == 1:
        days_idle = (today - add_months(today, -settings.PSPLAN_STALE_AFTER_MONTHS)).days - rng.randint(2, 12)
    else:
        days_idle = rng.randint(0, 40)
    last_activity = min(_aware(today - timedelta(days=days_idle), 9), timezone.now())
    return _with_quirks(iid, labels), IssueState.OPENED, None, last_activity


def _with_quirks(iid: int, labels: list[str]) -> list[str]:
    """A few issues carry the label variants and mistakes real GitLab data has."""
    quirks = {
        13: lambda ls: [
            label.replace("::", ":") if label.startswith("proposal::") else label for label in ls
        ],
        29: lambda ls: [label.lower() if label.startswith("proposal::") else label for label in ls],
        41: lambda ls: [label.replace("Segment::", "") for label in ls],
        57: lambda ls: [*ls, "Segment::Ent_LATAM"],
        73: lambda ls: [*ls, "close_qtr::Q3-23"],
        89: lambda ls: (
            [*ls, "proposal::On_hold"] if "proposal::On_hold" not in ls else [*ls, "proposal::SOW_WIP"]
        ),
        97: lambda ls: [label.replace("Ent_EAST", "Ent_East") for label in ls],
    }
    return quirks[iid](labels) if iid in quirks else labels


def _seed_users(em: EngagementManager, *, reset_passwords: bool) -> dict[str, str]:
    """Demo sign-ins; a password is printed only when it is set (first run or --reset-passwords)."""
    user_model = get_user_model()
    group, _ = Group.objects.get_or_create(name=ENGAGEMENT_MANAGERS_GROUP)
    passwords = {}
    for username, fields in DEMO_USERS.items():
        user, created = user_model.objects.get_or_create(
            username=username, defaults={**fields, "email": f"{username}@example.com"}
        )
        if created or reset_passwords:
            passwords[username] = secrets.token_urlsafe(9)
            user.set_password(passwords[username])
            user.save()
    em_user = user_model.objects.get(username="em")
    em_user.groups.add(group)
    if em.user_id != em_user.pk:
        em.user = em_user
        em.save(update_fields=["user"])
    return passwords
