"""Outside URLs become links only when http(s); a strict CSP and no inline script or style; live updates."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from opportunities.templatetags.outside import is_web_url
from scoping.models import GitLabWrite
from tests.factories import EngagementManagerFactory, OpportunityFactory, ScopingIssueFactory

SC = "Services Calculator"
HOSTILE_URL = "javascript:fetch('/api/token/')"


@pytest.mark.parametrize(
    ("url", "linked"),
    [
        ("https://gitlab.com/group/project/-/issues/1", True),
        ("http://gitlab.internal/group/project/-/issues/1", True),
        ("HTTPS://GITLAB.COM/x", True),
        ("javascript:alert(1)", False),
        ("JavaScript:alert(1)", False),
        (" javascript:alert(1)", False),
        ("data:text/html,<script>alert(1)</script>", False),
        ("vbscript:msgbox", False),
        ("//evil.example.com/x", False),
        ("https:///no-host", False),
        ("", False),
        (None, False),
    ],
)
def test_only_http_and_https_urls_with_a_host_become_links(url, linked):
    assert is_web_url(url) is linked


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    ["/issues/", "/boards/?engagement_manager=all", "/triage/", "/sync/", "/issues/{iid}/", "/my-work/"],
)
def test_a_javascript_url_from_gitlab_is_never_a_link(em_client, em_user, path):
    issue = ScopingIssueFactory(web_url=HOSTILE_URL, engagement_manager=None, labels=[SC, "Open"])
    GitLabWrite.objects.create(issue=issue, status="failed", last_error="refused")
    html = em_client.get(path.format(iid=issue.iid)).content.decode()
    assert "javascript:" not in html


@pytest.mark.django_db
def test_a_javascript_url_from_salesforce_is_never_a_link(em_client, settings):
    OpportunityFactory(scoping_issue_link="javascript:alert(1)")
    assert "javascript:" not in em_client.get("/opportunities/").content.decode()


INLINE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=", re.IGNORECASE)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/my-work/",
        "/boards/",
        "/boards/?engagement_manager=all",
        "/triage/",
        "/issues/",
        "/issues/{iid}/",
        "/opportunities/",
        "/sync/",
    ],
)
def test_pages_carry_a_strict_csp_and_no_inline_script_style_or_handlers(em_client, em_user, path):
    em = em_user.engagement_manager
    issue = ScopingIssueFactory(engagement_manager=em, opportunity=OpportunityFactory(engagement_manager=em))
    response = em_client.get(path.format(iid=issue.iid))
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert INLINE.findall(response.content.decode()) == []


@pytest.mark.django_db
def test_htmx_is_told_not_to_inject_its_indicator_style_nor_to_eval_even_in_debug(reader_client, settings):
    settings.DEBUG = True  # django-htmx's debug helper would replace the whole page with any 400
    html = reader_client.get("/issues/").content.decode()
    assert '"includeIndicatorStyles": false' in html and '"allowEval": false' in html
    assert "django-htmx.js" not in html


@pytest.mark.django_db
def test_changes_answers_204_until_something_changes_then_tells_the_lists(em_client):
    issue = ScopingIssueFactory(labels=[SC, "Open"], last_activity_at=timezone.now() - timedelta(days=1))
    page = em_client.get("/issues/").content.decode()
    since = re.search(r"since=([^\"]+)", page).group(1)
    assert em_client.get(f"/changes/?since={since}").status_code == 204
    em_client.post(f"/issues/{issue.iid}/em-status/", {"em_status": "ToDo"}, headers={"HX-Request": "true"})
    changed = em_client.get(f"/changes/?since={since}")
    assert changed.status_code == 200 and changed["HX-Trigger"] == "psplan-changed"
    assert f"since={since}" not in changed.content.decode()


@pytest.mark.django_db
def test_changes_without_a_valid_since_only_hands_out_one(em_client):
    response = em_client.get("/changes/?since=nonsense")
    assert response.status_code == 200 and "HX-Trigger" not in response
    assert "since=" in response.content.decode()


@pytest.mark.django_db
def test_pager_links_drop_empty_filters(reader_client):
    for _ in range(51):
        ScopingIssueFactory()
    html = reader_client.get("/issues/?stage=&segment=&search=").content.decode()
    assert 'href="?page=2"' in html


@pytest.mark.django_db
def test_filters_show_people_by_name_in_one_shared_select(reader_client):
    EngagementManagerFactory(name="Priya Raman", gitlab_username="praman")
    for path in ("/issues/", "/boards/?engagement_manager=all", "/opportunities/"):
        html = reader_client.get(path).content.decode()
        assert '<option value="praman">Priya Raman</option>' in html, path
