"""My work: the EM's landing page, and its weekly e-mail."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from opportunities.choices import AssignmentRole, EMConfidence
from opportunities.models import SalesforceWrite, TerritoryAssignment
from psplan.fiscal import add_months
from psplan.queue import WriteStatus
from scoping.digest import send_weekly_digests
from scoping.models import DigestSubscription, GitLabWrite
from tests.factories import (
    AccountFactory,
    EngagementManagerFactory,
    OpportunityFactory,
    ScopingIssueFactory,
    TerritoryFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db
SC = "Services Calculator"


def _my_day(em):
    now = timezone.now()
    territory = TerritoryFactory()
    TerritoryAssignment.objects.create(
        territory=territory, engagement_manager=em, role=AssignmentRole.PRIMARY
    )
    ScopingIssueFactory(
        title="new in my territory",
        created_at=now - timedelta(hours=30),
        opportunity=OpportunityFactory(account=AccountFactory(territory=territory)),
        labels=[SC, "Open"],
    )
    ScopingIssueFactory(  # untriaged too, but another EM's territory and no territory at all
        title="new elsewhere",
        created_at=now - timedelta(hours=30),
        opportunity=OpportunityFactory(account=AccountFactory(territory=TerritoryFactory())),
        labels=[SC, "Open"],
    )
    ScopingIssueFactory(
        title="new without opportunity", created_at=now - timedelta(hours=30), labels=[SC, "Open"]
    )
    ScopingIssueFactory(
        title="to do",
        engagement_manager=em,
        labels=[SC, "proposal::SOW_WIP", "Segment::SMB", "EM_Status::ToDo"],
    )
    quiet = add_months(now, -2) + timedelta(days=5)
    ScopingIssueFactory(
        title="going quiet",
        engagement_manager=em,
        labels=[SC, "proposal::SOW_WIP", "Segment::SMB"],
        updated_at=quiet,
        last_activity_at=quiet,
    )
    OpportunityFactory(
        name="Red soon",
        engagement_manager=em,
        em_confidence=EMConfidence.RED,
        close_date=timezone.localdate() + timedelta(days=10),
    )
    OpportunityFactory(
        name="Green soon",
        engagement_manager=em,
        em_confidence=EMConfidence.GREEN,
        close_date=timezone.localdate() + timedelta(days=10),
    )
    refused = ScopingIssueFactory(
        title="refused", engagement_manager=em, labels=[SC, "proposal::SOW_WIP", "Segment::SMB"]
    )
    GitLabWrite.objects.create(issue=refused, status=WriteStatus.FAILED, last_error="403 label missing")


def test_an_em_lands_on_my_work_after_sign_in(client, em_user):
    client.force_login(em_user)
    assert client.get("/home/").url == "/my-work/"


def test_a_reader_lands_on_the_issue_table(reader_client):
    assert reader_client.get("/home/").url == "/issues/"


def test_my_work_lists_what_needs_the_em_today(em_client, em_user):
    _my_day(em_user.engagement_manager)
    response = em_client.get("/my-work/")
    work = response.context["work"]
    assert [i.title for i in work.untriaged] == ["new in my territory"]
    assert [i.title for i in work.to_do] == ["to do"]
    assert [i.title for i in work.going_stale] == ["going quiet"]
    assert [o.name for o in work.closing_opportunities] == ["Red soon"]
    assert [w.title for w in work.failed_gitlab] == ["refused"]
    html = response.content.decode()
    assert ">overdue<" in html and "403 label missing" in html
    assert 'Changes GitLab or Salesforce refused <span class="count-badge">1</span>' in html


def test_refused_writes_are_those_on_the_ems_work_or_made_by_them(em_client, em_user):
    em, other = em_user.engagement_manager, EngagementManagerFactory()
    mine = ScopingIssueFactory(title="my issue", engagement_manager=em)
    theirs = ScopingIssueFactory(title="their issue", engagement_manager=other)
    my_deal = OpportunityFactory(name="my deal", engagement_manager=em)
    their_deal = OpportunityFactory(name="their deal", engagement_manager=other)
    refused = {"status": WriteStatus.FAILED, "last_error": "refused"}
    GitLabWrite.objects.create(issue=mine, **refused)
    GitLabWrite.objects.create(issue=theirs, created_by=em_user, **refused)
    GitLabWrite.objects.create(issue=theirs, **refused)  # the rules' own, on another EM's issue
    GitLabWrite.objects.create(issue=mine, status=WriteStatus.PENDING)
    SalesforceWrite.objects.create(opportunity=my_deal, changes={}, **refused)
    SalesforceWrite.objects.create(opportunity=their_deal, changes={}, created_by=em_user, **refused)
    SalesforceWrite.objects.create(opportunity=their_deal, changes={}, **refused)
    work = em_client.get("/my-work/").context["work"]
    assert sorted(w.title for w in work.failed_gitlab) == ["my issue", "their issue"]
    assert sorted(w.name for w in work.failed_salesforce) == ["my deal", "their deal"]


def test_an_em_without_an_account_sees_no_write_the_rules_made_on_others_work(em_client):
    em, other = EngagementManagerFactory(name="Tom Becker", user=None), EngagementManagerFactory()
    refused = {"status": WriteStatus.FAILED, "last_error": "refused"}
    GitLabWrite.objects.create(issue=ScopingIssueFactory(title="his", engagement_manager=em), **refused)
    GitLabWrite.objects.create(
        issue=ScopingIssueFactory(title="not his", engagement_manager=other), **refused
    )
    SalesforceWrite.objects.create(
        opportunity=OpportunityFactory(engagement_manager=other), changes={}, **refused
    )
    work = em_client.get(f"/my-work/?engagement_manager={em.gitlab_username}").context["work"]
    assert [w.title for w in work.failed_gitlab] == ["his"]
    assert work.failed_salesforce == []


def test_closing_soon_means_from_today_to_30_days_ahead(em_client, em_user):
    today = timezone.localdate()
    for name, days in [("yesterday", -1), ("today", 0), ("in 30 days", 30), ("in 31 days", 31)]:
        OpportunityFactory(
            name=name,
            engagement_manager=em_user.engagement_manager,
            em_confidence=EMConfidence.GREY,
            close_date=today + timedelta(days=days),
        )
    OpportunityFactory(  # another EM's
        em_confidence=EMConfidence.GREY, close_date=today, engagement_manager=EngagementManagerFactory()
    )
    work = em_client.get("/my-work/").context["work"]
    assert [o.name for o in work.closing_opportunities] == ["today", "in 30 days"]


def test_my_work_query_count_does_not_grow_with_work(em_client, em_user):
    _my_day(em_user.engagement_manager)
    with CaptureQueriesContext(connection) as one:
        em_client.get("/my-work/")
    for _ in range(5):
        _my_day(em_user.engagement_manager)
    with CaptureQueriesContext(connection) as many:
        em_client.get("/my-work/")
    assert len(many) == len(one)


def test_the_weekly_digest_is_opt_in_and_mails_the_same_lists(em_client, em_user):
    _my_day(em_user.engagement_manager)
    UserFactory(username="someone-else")
    assert send_weekly_digests() == 0
    em_client.post("/my-work/digest/", {"weekly": "on"})
    assert DigestSubscription.objects.filter(user=em_user).exists()
    assert send_weekly_digests() == 1
    (message,) = mail.outbox
    assert message.to == [em_user.email]
    assert "new in my territory" in message.body and "Red: Red soon" in message.body
    assert em_client.get("/my-work/").context["digest_form"].initial == {"weekly": True}
    em_client.post("/my-work/digest/", {})
    assert not DigestSubscription.objects.exists()
    assert em_client.get("/my-work/").context["digest_form"].initial == {"weekly": False}
