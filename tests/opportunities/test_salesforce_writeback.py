"""Delivery of PS-field edits to Salesforce: batched, conditional, never lost, never applied twice."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from opportunities.choices import SyncKind, SyncStatus
from opportunities.models import Opportunity, SalesforceWrite, SyncRun
from opportunities.salesforce_client import SalesforceRateLimited
from opportunities.salesforce_sync import pull_opportunities
from opportunities.services import update_ps_fields
from opportunities.tasks import deliver_salesforce_writes as deliver_task
from opportunities.write_back import deliver_salesforce_writes
from psplan import queue
from psplan.queue import WriteStatus
from tests.factories import OpportunityFactory
from tests.standins import salesforce as faults
from tests.standins.salesforce import SalesforceStandIn

pytestmark = pytest.mark.django_db
LINK = "https://gitlab.com/gitlab-com/customer-success/professional-services-group/ww-consulting/ps-plan/-/issues/{}"


def mirrored(salesforce: SalesforceStandIn, count: int) -> list[Opportunity]:
    """Opportunities in Salesforce and pulled into PS Plan, so each knows its SystemModstamp."""
    for n in range(count):
        salesforce.add_opportunity(Name=f"Deal {n:04d}", Scoping_Issue_Link__c=LINK.format(n))
    pull_opportunities(full=True)
    salesforce.reset_requests()
    return list(Opportunity.objects.order_by("name"))


def deliver_pending_writes(**options) -> int:
    return deliver_salesforce_writes(**options)["delivered"]


def composite_bodies(salesforce: SalesforceStandIn) -> list[dict]:
    return [json.loads(r.body) for r in salesforce.write_requests if r.path.endswith("/composite")]


def test_edits_go_25_per_composite_request_with_if_unmodified_since_and_update_the_mirror(
    salesforce, em_user
):
    opportunities = mirrored(salesforce, 60)
    for opportunity in opportunities:
        update_ps_fields(opportunity=opportunity, actor=em_user, em_confidence="Green")

    assert deliver_pending_writes() == 60

    bodies = composite_bodies(salesforce)
    assert [len(body["compositeRequest"]) for body in bodies] == [25, 25, 10]
    assert all("If-Unmodified-Since" in sub["httpHeaders"] for b in bodies for sub in b["compositeRequest"])
    assert [r.kind for r in salesforce.requests] == ["write"] * 3 + ["query"]  # one read-back of all 60
    assert set(SalesforceWrite.objects.values_list("status", flat=True)) == {WriteStatus.DELIVERED}
    first = Opportunity.objects.get(pk=opportunities[0].pk)
    assert salesforce.get_opportunity(first.salesforce_id)["EM_Confidence__c"] == "Green"
    assert first.system_modstamp == salesforce.get_opportunity(first.salesforce_id)["SystemModstamp"]
    run = SyncRun.objects.filter(kind=SyncKind.SALESFORCE_OUTBOX).get()
    assert (run.status, run.counts["delivered"]) == (SyncStatus.SUCCEEDED, 60)


def test_the_next_pull_after_a_delivery_sees_no_change(salesforce, em_user):
    (opportunity,) = mirrored(salesforce, 1)
    update_ps_fields(
        opportunity=opportunity, actor=em_user, em_confidence="Amber", em_confidence_rationale="Legal"
    )
    deliver_pending_writes()

    with CaptureQueriesContext(connection) as queries:
        result = pull_opportunities()

    assert result.changed_ids == set()
    writes = [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith(("INSERT", "UPDATE", "DELETE"))
    ]
    assert all("opportunities_syncrun" in sql for sql in writes)


def test_edits_of_never_pulled_opportunities_go_200_per_collection_request(salesforce, em_user):
    for n in range(450):
        sf_id = salesforce.add_opportunity(Name=f"Deal {n}")
        update_ps_fields(
            opportunity=OpportunityFactory(salesforce_id=sf_id, system_modstamp=None),
            actor=em_user,
            scoping_issue_link=LINK.format(n),
        )

    assert deliver_pending_writes() == 450

    writes = salesforce.write_requests
    assert [r.path.rsplit("/", 2)[-2:] for r in writes] == [["composite", "sobjects"]] * 3
    assert sum(r.kind == "query" for r in salesforce.requests) == 3  # a read-back per batch of 200


def test_two_pending_edits_of_one_opportunity_go_as_one_update(salesforce, em_user):
    (opportunity,) = mirrored(salesforce, 1)
    update_ps_fields(
        opportunity=opportunity, actor=em_user, em_confidence="Red", em_confidence_rationale="No budget"
    )
    update_ps_fields(opportunity=opportunity, actor=em_user, em_confidence="Green")

    assert deliver_pending_writes() == 2

    (body,) = composite_bodies(salesforce)
    assert [sub["body"] for sub in body["compositeRequest"]] == [
        {"EM_Confidence__c": "Green", "EM_Confidence_Rationale__c": "No budget"}
    ]


def test_a_refusal_is_kept_as_failed_with_salesforces_message_and_the_mirror_shows_salesforce(
    salesforce, em_user
):
    (opportunity,) = mirrored(salesforce, 1)
    salesforce.set_validation_rule(
        lambda record: "Green needs a signed SOW" if record["EM_Confidence__c"] == "Green" else None
    )
    write = update_ps_fields(opportunity=opportunity, actor=em_user, em_confidence="Green")

    assert deliver_pending_writes() == 0

    write.refresh_from_db()
    assert write.status == WriteStatus.FAILED
    assert write.last_error == (
        "Salesforce refused the change: FIELD_CUSTOM_VALIDATION_EXCEPTION: Green needs a signed SOW"
    )
    assert write.changes == {"em_confidence": "Green"}  # nothing lost
    opportunity.refresh_from_db()
    assert opportunity.em_confidence == "Grey"


def test_a_newer_salesforce_edit_is_not_overwritten_and_the_write_fails_saying_so(salesforce, em_user):
    (opportunity,) = mirrored(salesforce, 1)
    write = update_ps_fields(opportunity=opportunity, actor=em_user, em_confidence="Green")
    with time_machine.travel(timezone.now() + timedelta(seconds=2)):
        salesforce.modify_opportunity(opportunity.salesforce_id, EM_Confidence__c="Red")

    assert deliver_pending_writes() == 0

    write.refresh_from_db()
    assert write.status == WriteStatus.FAILED
    assert "someone changed this opportunity in Salesforce" in write.last_error
    assert salesforce.get_opportunity(opportunity.salesforce_id)["EM_Confidence__c"] == "Red"
    opportunity.refresh_from_db()
    assert opportunity.em_confidence == "Red"


def test_an_outage_keeps_the_write_waiting_with_a_backoff_and_recovery_delivers_it_exactly_once(
    salesforce, em_user, settings
):
    (opportunity,) = mirrored(salesforce, 1)
    write = update_ps_fields(opportunity=opportunity, actor=em_user, em_confidence="Green")
    salesforce.inject_fault(faults.UNAVAILABLE, times=1)  # a worker tries once: the queue is the retry

    assert deliver_pending_writes() == 0

    write.refresh_from_db()
    assert (write.status, write.attempts) == (WriteStatus.PENDING, 1)
    assert "will retry" in write.last_error and "503" in write.last_error
    assert write.next_attempt_at > timezone.now() + timedelta(seconds=20)
    assert SyncRun.objects.filter(kind=SyncKind.SALESFORCE_OUTBOX).get().status == SyncStatus.FAILED
    assert deliver_pending_writes() == 0  # not due yet: nothing is sent
    assert len(salesforce.requests) == 1
    with time_machine.travel(write.next_attempt_at + timedelta(seconds=1)):
        assert deliver_pending_writes() == 1
        assert deliver_pending_writes() == 0
    assert [r.status for r in salesforce.write_requests] == [503, 200]
    write.refresh_from_db()
    assert (write.status, write.attempts, write.last_error) == (WriteStatus.DELIVERED, 2, "")


def test_a_resend_after_a_lost_answer_counts_as_delivered_and_is_not_applied_twice(salesforce, em_user):
    (opportunity,) = mirrored(salesforce, 1)
    write = update_ps_fields(opportunity=opportunity, actor=em_user, em_confidence="Green")
    deliver_pending_writes()
    after_first = salesforce.get_opportunity(opportunity.salesforce_id)["SystemModstamp"]
    # A worker that sent the write but died before recording it: the lease ends, the row is due again.
    SalesforceWrite.objects.filter(pk=write.pk).update(status=WriteStatus.PENDING, delivered_at=None)

    with time_machine.travel(timezone.now() + timedelta(seconds=2)):
        assert deliver_pending_writes() == 1

    write.refresh_from_db()
    assert write.status == WriteStatus.DELIVERED
    assert salesforce.get_opportunity(opportunity.salesforce_id)["SystemModstamp"] == after_first


def test_a_claimed_write_is_not_claimed_by_another_worker_until_its_lease_ends():
    lease = timedelta(minutes=1)
    write = SalesforceWrite.objects.create(
        opportunity=OpportunityFactory(), changes={"em_confidence": "Green"}
    )

    assert [w.pk for w in queue.claim(SalesforceWrite, limit=10, lease=lease)] == [write.pk]
    assert queue.claim(SalesforceWrite, limit=10, lease=lease) == []
    with time_machine.travel(timezone.now() + lease + timedelta(seconds=2)):
        assert [w.pk for w in queue.claim(SalesforceWrite, limit=10, lease=lease)] == [write.pk]
    write.refresh_from_db()
    assert write.attempts == 2


def test_request_limit_exceeded_during_delivery_reschedules_the_writes_and_stops_asking(salesforce, em_user):
    (opportunity,) = mirrored(salesforce, 1)
    write = update_ps_fields(opportunity=opportunity, actor=em_user, em_confidence="Green")
    salesforce.inject_fault(faults.RATE_LIMITED, times=5)

    assert deliver_pending_writes() == 0

    write.refresh_from_db()
    assert write.status == WriteStatus.PENDING
    assert write.next_attempt_at >= timezone.now() + timedelta(minutes=29)
    run = SyncRun.objects.filter(kind=SyncKind.SALESFORCE_OUTBOX).get()
    assert run.counts["rate_limited"] is True and "API request limit exceeded" in run.error
    with pytest.raises(SalesforceRateLimited, match="waits until"):
        pull_opportunities()
    assert len(salesforce.requests) == 1


def test_with_nothing_due_delivery_sends_nothing_and_records_no_run(salesforce):
    assert deliver_pending_writes() == 0
    assert salesforce.requests == [] and not SyncRun.objects.exists()


def test_the_task_delivers_the_pending_writes(salesforce, em_user):
    (opportunity,) = mirrored(salesforce, 1)
    update_ps_fields(opportunity=opportunity, actor=em_user, em_confidence="Green")

    deliver_task.delay()

    assert SalesforceWrite.objects.get().status == WriteStatus.DELIVERED


def test_with_a_budget_an_outage_is_waited_out_within_the_run(salesforce, em_user, settings):
    settings.SALESFORCE_MAX_RETRIES = 0
    opportunities = mirrored(salesforce, 3)
    for opportunity in opportunities:
        update_ps_fields(opportunity=opportunity, actor=em_user, em_confidence="Green")
    salesforce.inject_fault(faults.UNAVAILABLE, times=3)

    assert deliver_pending_writes(budget=30) == 3

    assert set(SalesforceWrite.objects.values_list("status", flat=True)) == {WriteStatus.DELIVERED}
