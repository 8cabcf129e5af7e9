from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import factory
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from opportunities.choices import EMConfidence, Segment
from opportunities.models import Account, EngagementManager, Opportunity, Territory
from psplan.fiscal import quarter_code
from scoping.choices import IssueState
from scoping.models import ScopingIssue
from scoping.services import derived_label_fields


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery staple")


class EngagementManagerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EngagementManager

    name = factory.Sequence(lambda n: f"Engagement Manager {n}")
    email = factory.Sequence(lambda n: f"em{n}@example.com")
    salesforce_user_id = factory.Sequence(lambda n: f"005{n:012d}AAA")
    gitlab_username = factory.Sequence(lambda n: f"em{n}")
    gitlab_user_id = factory.Sequence(lambda n: 5000 + n)


class TerritoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Territory
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"AMER - Enterprise - Region {n}")
    segment = Segment.ENT_EAST


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    salesforce_id = factory.Sequence(lambda n: f"001{n:012d}AAA")
    name = factory.Sequence(lambda n: f"Customer {n}")
    territory = factory.SubFactory(TerritoryFactory)
    sales_territory = factory.LazyAttribute(lambda a: a.territory.name if a.territory else "")


class OpportunityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Opportunity

    salesforce_id = factory.Sequence(lambda n: f"006{n:012d}AAA")
    name = factory.Sequence(lambda n: f"Opportunity {n}")
    account = factory.SubFactory(AccountFactory)
    stage_name = "3-Technical Evaluation"
    close_date = factory.LazyFunction(lambda: timezone.localdate() + timedelta(days=30))
    close_quarter = factory.LazyAttribute(lambda o: quarter_code(o.close_date))
    amount = Decimal("100000.00")
    proserv_amount = Decimal("25000.00")
    em_confidence = EMConfidence.GREY
    system_modstamp = factory.LazyFunction(timezone.now)


class ScopingIssueFactory(factory.django.DjangoModelFactory):
    """A scoping issue whose derived columns agree with its labels and state."""

    class Meta:
        model = ScopingIssue

    gitlab_id = factory.Sequence(lambda n: 700_000 + n)
    # Far above the issue numbers tests and datasets choose by hand (#42, #201…): a sequence that has run long
    # in one worker would otherwise reach them and collide.
    iid = factory.Sequence(lambda n: 100_000 + n)
    title = factory.Sequence(lambda n: f"Scoping: customer {n}")
    description = ""
    web_url = factory.LazyAttribute(
        lambda i: f"{settings.GITLAB_URL}/{settings.GITLAB_PROJECT}/-/issues/{i.iid}"
    )
    state = IssueState.OPENED
    labels = factory.LazyFunction(lambda: [settings.GITLAB_SCOPING_LABEL, "Open"])
    created_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=30))
    updated_at = factory.LazyFunction(timezone.now)
    last_activity_at = factory.LazyAttribute(lambda i: i.updated_at)

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        for name, value in derived_label_fields(labels=kwargs["labels"], state=kwargs["state"]).items():
            kwargs.setdefault(name, value)
        return super()._create(model_class, *args, **kwargs)
