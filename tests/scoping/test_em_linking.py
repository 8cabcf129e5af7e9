"""Engagement managers are linked to GitLab users after each Salesforce pull: by public e-mail, else by
exact full name among the project's members, else by an admin in one step."""

from __future__ import annotations

import pytest
from django.urls import reverse

from opportunities.choices import SyncKind, SyncStatus
from opportunities.models import EngagementManager, SyncRun
from scoping.em_linking import link_engagement_managers
from scoping.models import ScopingIssue
from scoping.sync import run_sync
from tests.factories import EngagementManagerFactory
from tests.scoping.conftest import SCOPING

pytestmark = pytest.mark.django_db


@pytest.fixture
def both(gitlab_on, salesforce, settings):
    """GitLab and Salesforce stand-ins, both configured."""
    settings.GITLAB_ENABLED = True
    return gitlab_on, salesforce


def an_opportunity_of(salesforce, name: str, email: str) -> None:
    user_id = salesforce.add_user(name, email)
    salesforce.add_opportunity(
        Engagement_Manager__c=user_id, Scoping_Issue_Link__c="https://gitlab.example/i/1"
    )


def test_an_em_is_linked_by_the_public_email_of_their_gitlab_user_and_their_issues_follow(both):
    gitlab, salesforce = both
    user = gitlab.add_user("priya.r", name="Priya R.", public_email="Priya.Raman@example.com")
    gitlab.add_issue(labels=[SCOPING, "Open"], assignees=["priya.r"])
    an_opportunity_of(salesforce, "Priya Raman", "priya.raman@example.com")

    report = run_sync(delivery_budget=5)

    assert report.ok, [step.message for step in report.steps]
    em = EngagementManager.objects.get(name="Priya Raman")
    assert (em.gitlab_username, em.gitlab_user_id, em.gitlab_link_problem) == ("priya.r", user["id"], "")
    assert ScopingIssue.objects.get().engagement_manager == em
    assert SyncRun.objects.get(kind=SyncKind.EM_LINKING).counts == {
        "linked": 1,
        "ambiguous": 0,
        "not_found": 0,
    }


def test_without_a_public_email_the_one_project_member_with_the_same_name_is_linked(both):
    gitlab, salesforce = both
    gitlab.add_user("tbecker", name="Tom  Becker", member=True)
    gitlab.add_user("tom.becker.other", name="Tom Becker")  # not in the project
    an_opportunity_of(salesforce, "Tom Becker", "tom@example.com")

    run_sync(delivery_budget=5)

    assert EngagementManager.objects.get().gitlab_username == "tbecker"


def test_two_members_with_the_same_name_are_not_guessed_and_an_admin_picks_one(both, admin_client):
    gitlab, salesforce = both
    gitlab.add_user("sam.okafor", name="Sam Okafor", member=True)
    second = gitlab.add_user("sokafor2", name="Sam Okafor", member=True)
    an_opportunity_of(salesforce, "Sam Okafor", "sam@example.com")

    run_sync(delivery_budget=5)

    em = EngagementManager.objects.get()
    assert em.gitlab_username == ""
    assert em.gitlab_link_problem == "2 project members are named 'Sam Okafor': @sam.okafor, @sokafor2"
    assert [c["username"] for c in em.gitlab_link_candidates] == ["sam.okafor", "sokafor2"]
    page = admin_client.get(reverse("admin:opportunities_engagementmanager_changelist")).content.decode()
    assert "2 project members are named" in page

    admin_client.post(
        reverse("admin:opportunities_engagementmanager_change", args=[em.pk]),
        {"name": em.name, "email": em.email, "user": "", "active": "on", "link_username": "@sokafor2"},
    )

    em.refresh_from_db()
    assert (em.gitlab_username, em.gitlab_user_id, em.gitlab_link_problem) == ("sokafor2", second["id"], "")


def test_an_em_nobody_matches_is_listed_and_not_looked_up_again_on_every_sync(both):
    gitlab, salesforce = both
    an_opportunity_of(salesforce, "Hannah Kim", "hannah@example.com")

    run_sync(delivery_budget=5)
    em = EngagementManager.objects.get()
    assert em.gitlab_link_problem == (
        "Not linked: no GitLab user shows the e-mail hannah@example.com, and no project member is named 'Hannah Kim'"
    )
    gitlab.reset_requests()

    run_sync(delivery_budget=5)

    assert gitlab.count_requests("GET", "/api/v4/users") == 0
    assert SyncRun.objects.filter(kind=SyncKind.EM_LINKING).count() == 1


def test_a_gitlab_user_linked_to_another_em_is_not_linked_twice(gitlab_on):
    gitlab_on.add_user("shared", name="Dana Whitfield", public_email="dana@example.com")
    EngagementManagerFactory(name="Dana W.", gitlab_username="shared")
    em = EngagementManagerFactory(name="Dana Whitfield", email="dana@example.com", gitlab_username="")

    link_engagement_managers()

    em.refresh_from_db()
    assert em.gitlab_username == ""
    assert em.gitlab_link_problem == "@shared is already linked to Dana W."


def test_gitlab_down_while_linking_is_recorded_and_the_salesforce_sync_still_succeeds(both):
    gitlab, salesforce = both
    an_opportunity_of(salesforce, "Luis Ortega", "luis@example.com")
    gitlab.fail_next(503, times=100, path="/api/v4/users")

    report = run_sync(gitlab=False, salesforce=True, delivery_budget=5)

    assert report.ok
    run = SyncRun.objects.get(kind=SyncKind.EM_LINKING)
    assert run.status == SyncStatus.FAILED and "503" in run.error
    assert EngagementManager.objects.get().gitlab_link_checked_at is None  # tried again next sync
