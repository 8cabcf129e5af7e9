"""`manage.py sync`: one synchronous sync of GitLab and Salesforce, then the closing rules."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from opportunities.choices import SyncStatus
from scoping.sync import Progress, ProgressFactory, SyncReport, run_sync


class Command(BaseCommand):
    help = (
        "Sync GitLab scoping issues and Salesforce opportunities once, apply the closing rules, then deliver "
        "the queued writes (retrying transient failures within PSPLAN_DELIVERY_BUDGET seconds). Exits non-zero "
        "when a system is unreachable or misconfigured, another sync is running, or writes are still pending."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--full", action="store_true", help="Read everything, not only what changed.")
        only = parser.add_mutually_exclusive_group()
        only.add_argument("--gitlab-only", action="store_true", help="Sync GitLab only (then the rules).")
        only.add_argument(
            "--salesforce-only", action="store_true", help="Sync Salesforce only (then the rules)."
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Refresh the mirrors and list what the rules would change, without writing to "
            "GitLab or sending queued edits.",
        )

    def handle(self, *args, full: bool, gitlab_only: bool, salesforce_only: bool, dry_run: bool, **options):
        gitlab, salesforce = self._systems(gitlab_only=gitlab_only, salesforce_only=salesforce_only)
        with self._progress_bars() as progress:
            report = run_sync(
                full=full,
                gitlab=gitlab,
                salesforce=salesforce,
                dry_run=dry_run,
                progress=progress,
                delivery_budget=settings.PSPLAN_DELIVERY_BUDGET,
            )
        self._print(report)
        if dry_run and report.rules is not None:
            self._print_plan(report.rules)
        self._print_pending(report)
        if report.locked_out:
            raise CommandError(_one_line(report.steps[0].message))
        if report.failures:
            raise CommandError(_one_line(" / ".join(step.message for step in report.failures)))
        if report.pending:
            last = report.pending[-1]
            raise CommandError(
                _one_line(
                    f"{len(report.pending)} write(s) still pending; last error: {last.error or 'none yet'}"
                )
            )

    def _systems(self, *, gitlab_only: bool, salesforce_only: bool) -> tuple[bool, bool]:
        """Which systems to sync; one explicitly asked for but not configured is an error."""
        if gitlab_only and not settings.GITLAB_ENABLED:
            raise CommandError("--gitlab-only, but GitLab sync is disabled: set GITLAB_TOKEN")
        if salesforce_only and not settings.SALESFORCE_ENABLED:
            raise CommandError(
                "--salesforce-only, but Salesforce sync is disabled: set SALESFORCE_INSTANCE_URL "
                "and SALESFORCE_ACCESS_TOKEN (or SALESFORCE_USERNAME and SALESFORCE_PASSWORD)"
            )
        gitlab = not salesforce_only and settings.GITLAB_ENABLED
        salesforce = not gitlab_only and settings.SALESFORCE_ENABLED
        if not gitlab and not salesforce:
            raise CommandError(
                "Nothing to sync: GitLab (GITLAB_TOKEN) and Salesforce (SALESFORCE_INSTANCE_URL) "
                "are both unset"
            )
        if not salesforce_only and not gitlab:
            self.stdout.write(self.style.WARNING("GitLab sync skipped: GITLAB_TOKEN is not set"))
        if not gitlab_only and not salesforce:
            self.stdout.write(
                self.style.WARNING("Salesforce sync skipped: SALESFORCE_INSTANCE_URL is not set")
            )
        return gitlab, salesforce

    @contextmanager
    def _progress_bars(self) -> Iterator[ProgressFactory | None]:
        """tqdm bars, one per step, only when a person is watching a terminal."""
        if not self.stdout.isatty():
            yield None
            return
        with ExitStack() as bars:

            def bar(label: str) -> Progress:
                shown = bars.enter_context(tqdm(desc=label, unit=" rows", file=self.stdout._out, leave=False))
                return shown.update

            yield bar

    def _print(self, report: SyncReport) -> None:
        styles = {
            SyncStatus.SUCCEEDED: self.style.SUCCESS,
            SyncStatus.SKIPPED: self.style.WARNING,
            SyncStatus.FAILED: self.style.ERROR,
        }
        for step in report.steps:
            self.stdout.write(styles.get(step.status, str)(step.message))

    def _print_pending(self, report: SyncReport) -> None:
        """Writes refused for good, and those not delivered within the budget (they wait in the queue)."""
        if report.failed:
            self.stdout.write(self.style.ERROR(f"Failed for good: {len(report.failed)} write(s)"))
            for write in report.failed[:20]:
                self.stdout.write(f"  {write.system} {write.record}: {_one_line(write.error)}")
        if not report.pending:
            return
        self.stdout.write(self.style.WARNING(f"Still pending: {len(report.pending)} write(s)"))
        for write in report.pending[:20]:
            when = f"{timezone.localtime(write.next_attempt_at):%Y-%m-%d %H:%M:%S}"
            self.stdout.write(
                f"  {write.system} {write.record}: next attempt {when}; {_one_line(write.error)}"
            )
        if len(report.pending) > 20:
            self.stdout.write(f"  … and {len(report.pending) - 20} more (see /sync/)")

    def _print_plan(self, result: object) -> None:
        """What a dry run of the rules would do, one issue a line."""
        changes = list(getattr(result, "changes", []))
        self.stdout.write(f"Dry run: {len(changes)} issue(s) would change; nothing was written.")
        for change in changes:
            parts = [f"#{change.iid} {change.rule} ({change.reason})"]
            if change.add_labels:
                parts.append("add " + ", ".join(change.add_labels))
            if change.remove_labels:
                parts.append("remove " + ", ".join(change.remove_labels))
            if change.close:
                parts.append("close")
            if change.comment:
                parts.append("comment")
            self.stdout.write("  " + "; ".join(parts))
        held_back = list(getattr(result, "held_back", []))
        if held_back:
            self.stdout.write(f"  … and {len(held_back)} more held back by the per-run cap")


def _one_line(message: str) -> str:
    return " ".join(str(message).split())
