"""`manage.py sync`: what it runs, what it prints, and when it exits non-zero."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from opportunities.choices import SyncKind, SyncStatus
from opportunities.models import SyncRun
from psplan.queue import WriteStatus
from scoping import services
from scoping.choices import Stage
from scoping.models import GitLabWrite, ScopingIssue
from scoping.sync import sync_lock
from tests.conftest import sqlite_process_env
from tests.scoping.conftest import GITLAB_PROJECT_ID, SCOPING, recently, seed

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def sync(*args: str) -> str:
    out = io.StringIO()
    call_command("sync", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_gitlab_only_syncs_the_mirror_then_applies_the_rules(gitlab_on):
    seed(gitlab_on, 120)

    output = sync("--gitlab-only")

    assert ScopingIssue.objects.count() == 120
    assert "GitLab full sync succeeded" in output
    assert "created 120" in output
    assert "Closing rules changed 0 issue(s)" in output
    assert SyncRun.objects.filter(kind=SyncKind.GITLAB_FULL, status=SyncStatus.SUCCEEDED).count() == 1


def test_a_second_run_is_incremental_and_changes_nothing(gitlab_on):
    seed(gitlab_on, 5)
    sync("--gitlab-only")
    gitlab_on.reset_requests()

    output = sync("--gitlab-only")

    assert "GitLab incremental sync succeeded" in output
    assert gitlab_on.count_requests("PUT") + gitlab_on.count_requests("POST") == 0


def test_full_reads_everything_again(gitlab_on):
    seed(gitlab_on, 5)
    sync("--gitlab-only")

    assert "GitLab full sync succeeded" in sync("--gitlab-only", "--full")


def test_a_disabled_salesforce_is_skipped_with_a_notice(gitlab_on):
    output = sync()

    assert "Salesforce sync skipped: SALESFORCE_INSTANCE_URL is not set" in output
    assert "GitLab full sync succeeded" in output


def test_queued_edits_are_sent_before_the_sync_reads_gitlab(gitlab_on):
    iid = seed(gitlab_on, 1)[0]
    sync("--gitlab-only")
    services.set_issue_stage(issue=ScopingIssue.objects.get(), stage=Stage.SOW_WIP, actor=None)

    sync("--gitlab-only")

    assert GitLabWrite.objects.get().status == WriteStatus.DELIVERED
    assert "proposal::SOW_WIP" in gitlab_on.issue(iid)["labels"]


def test_a_dry_run_sends_no_queued_edit(gitlab_on):
    seed(gitlab_on, 1)
    sync("--gitlab-only")
    services.set_issue_stage(issue=ScopingIssue.objects.get(), stage=Stage.SOW_WIP, actor=None)

    output = sync("--gitlab-only", "--dry-run")

    assert "Dry run: 0 issue(s) would change; nothing was written." in output
    assert "Closing rules would change 0 issue(s)" in output
    assert GitLabWrite.objects.get().status == WriteStatus.PENDING
    assert gitlab_on.count_requests("PUT") == 0


def test_gitlab_only_without_a_token_is_an_error(settings):
    settings.GITLAB_ENABLED = False

    with pytest.raises(CommandError, match="--gitlab-only, but GitLab sync is disabled: set GITLAB_TOKEN"):
        sync("--gitlab-only")
    assert not SyncRun.objects.exists()


def test_salesforce_only_without_salesforce_is_an_error(gitlab_on):
    with pytest.raises(CommandError, match="--salesforce-only, but Salesforce sync is disabled"):
        sync("--salesforce-only")


def test_nothing_configured_is_an_error(settings):
    settings.GITLAB_ENABLED = settings.SALESFORCE_ENABLED = False

    with pytest.raises(CommandError, match=r"^Nothing to sync"):
        sync()


def test_only_one_of_gitlab_only_and_salesforce_only(gitlab_on):
    with pytest.raises(CommandError, match="not allowed with argument"):
        sync("--gitlab-only", "--salesforce-only")


def test_an_unreachable_gitlab_is_a_one_line_error_and_a_failed_run(gitlab_on):
    seed(gitlab_on, 3)
    gitlab_on.fail_next(502, times=100)

    with pytest.raises(CommandError) as caught:
        sync("--gitlab-only")

    message = str(caught.value)
    assert message.startswith("GitLab sync failed: GitLab at http://127.0.0.1:")
    assert "answered 502 (3 attempts)" in message
    assert "\n" not in message
    run = SyncRun.objects.get(kind=SyncKind.GITLAB_FULL)
    assert (run.status, "502" in run.error) == (SyncStatus.FAILED, True)
    assert not SyncRun.objects.filter(kind=SyncKind.RULES).exists()  # rules wait for a good sync


def test_a_rejected_token_says_so(gitlab_on, settings):
    settings.GITLAB_TOKEN = "expired"

    with pytest.raises(CommandError, match=r"rejected the token .*check GITLAB_TOKEN"):
        sync("--gitlab-only")


def test_a_sync_while_another_runs_is_skipped_and_says_why(gitlab_on):
    with sync_lock() as held:
        assert held is not None
        with pytest.raises(CommandError, match=r"^Skipped: another sync is running"):
            sync("--gitlab-only")

    run = SyncRun.objects.get()
    assert run.status == SyncStatus.SKIPPED
    assert held.owner in run.error
    assert gitlab_on.request_count == 0


def test_a_progress_bar_is_shown_only_on_a_terminal(gitlab_on):
    seed(gitlab_on, 3)
    terminal, pipe = Terminal(), io.StringIO()

    call_command("sync", "--gitlab-only", stdout=terminal, stderr=io.StringIO())
    call_command("sync", "--gitlab-only", "--full", stdout=pipe, stderr=io.StringIO())

    assert "GitLab issues: " in terminal.getvalue()
    assert "GitLab issues: " not in pipe.getvalue()


def test_the_command_exits_non_zero_with_the_message_and_no_traceback(tmp_path):
    env = sqlite_process_env(tmp_path / "unused.sqlite3")

    done = subprocess.run(
        [sys.executable, "manage.py", "sync", "--gitlab-only"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert done.stderr.strip() == "CommandError: --gitlab-only, but GitLab sync is disabled: set GITLAB_TOKEN"
    assert "Traceback" not in done.stderr + done.stdout


def test_the_issues_endpoint_is_only_read(gitlab_on):
    seed(gitlab_on, 2)

    sync("--gitlab-only")

    methods = {(r.method, r.path.split("?")[0]) for r in gitlab_on.requests}
    assert methods == {("GET", f"/api/v4/projects/{GITLAB_PROJECT_ID}/issues")}


def test_under_bursts_of_429_and_502_a_sync_delivers_every_write_and_a_second_one_writes_nothing(
    gitlab_on, settings
):
    settings.PSPLAN_DELIVERY_BUDGET = 60
    iids = seed(gitlab_on, 40, start=recently(days=100), labels=[SCOPING, "proposal::Strawman_WIP"])
    gitlab_on.fail_at_random({429: 0.10, 502: 0.05}, seed=7)

    output = sync("--gitlab-only")

    assert "Closing rules changed 40 issue(s)" in output
    assert "GitLab write-back: 40 delivered" in output
    assert SyncRun.objects.filter(kind=SyncKind.GITLAB_OUTBOX).count() == 1  # one run, not one per closure
    assert set(GitLabWrite.objects.values_list("status", flat=True)) == {WriteStatus.DELIVERED}
    for iid in iids:
        remote = gitlab_on.issue(iid)
        assert remote["state"] == "closed" and "proposal::Closed_Lost" in remote["labels"]
        assert len([n for n in gitlab_on.notes(iid) if not n["system"]]) == 1  # one comment, never two

    gitlab_on.clear_faults()
    gitlab_on.reset_requests()
    assert "Closing rules changed 0 issue(s)" in sync("--gitlab-only")
    assert gitlab_on.count_requests("PUT") + gitlab_on.count_requests("POST") == 0


def test_writes_still_pending_when_the_budget_runs_out_are_listed_and_the_exit_is_non_zero(
    gitlab_on, settings
):
    settings.PSPLAN_DELIVERY_BUDGET = 1
    iid = seed(gitlab_on, 1)[0]
    sync("--gitlab-only")
    services.set_issue_stage(issue=ScopingIssue.objects.get(), stage=Stage.SOW_WIP, actor=None)
    gitlab_on.fail_next(503, times=1000, method="PUT")
    out = io.StringIO()

    with pytest.raises(CommandError) as caught:
        call_command("sync", "--gitlab-only", stdout=out, stderr=io.StringIO())

    assert str(caught.value).startswith("1 write(s) still pending; last error: GitLab at http://127.0.0.1:")
    assert "answered 503" in str(caught.value)
    assert f"Still pending: 1 write(s)\n  GitLab #{iid}: next attempt " in out.getvalue()
    assert GitLabWrite.objects.get().status == WriteStatus.PENDING


def test_a_write_gitlab_refuses_is_listed_with_gitlabs_reason(gitlab_on):
    seed(gitlab_on, 1)
    sync("--gitlab-only")
    services.set_issue_stage(issue=ScopingIssue.objects.get(), stage=Stage.SOW_WIP, actor=None)
    gitlab_on.fail_next(403, method="PUT", message="403 Forbidden - You are not allowed to edit this issue")
    out = io.StringIO()

    with pytest.raises(CommandError, match="GitLab write-back: 1 failed"):
        call_command("sync", "--gitlab-only", stdout=out, stderr=io.StringIO())

    assert "Failed for good: 1 write(s)" in out.getvalue()
    assert "You are not allowed to edit this issue" in out.getvalue()
