from django.conf import settings
from django.core.management.base import BaseCommand

from opportunities.models import Opportunity
from scoping.demo import seed_demo_data
from scoping.models import ScopingIssue


class Command(BaseCommand):
    help = "Create realistic demo data (EMs, territories, opportunities, scoping issues) and demo sign-ins."

    def add_arguments(self, parser):
        parser.add_argument(
            "--reset-passwords", action="store_true", help="Give the demo users new passwords and print them."
        )
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Only seed an empty database with no GitLab or Salesforce configured.",
        )

    def handle(self, *args, reset_passwords: bool = False, if_empty: bool = False, **options):
        if if_empty and (reason := self._reason_to_skip()):
            self.stdout.write(f"No demo data loaded: {reason}.")
            return
        result = seed_demo_data(reset_passwords=reset_passwords)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready: {result.engagement_managers} engagement managers, {result.territories} territories, "
                f"{result.accounts} accounts, {result.opportunities} opportunities, {result.issues} scoping issues."
            )
        )
        if result.passwords:
            self.stdout.write("Demo sign-ins (shown once):")
            for username, password in result.passwords.items():
                self.stdout.write(f"  {username:<7} {password}")
        else:
            self.stdout.write(
                "Demo users already exist with their passwords unchanged (use --reset-passwords for new ones)."
            )

    def _reason_to_skip(self) -> str:
        if settings.GITLAB_ENABLED or settings.SALESFORCE_ENABLED:
            return "GitLab or Salesforce is configured, so real data comes from `manage.py sync`"
        if ScopingIssue.objects.exists() or Opportunity.objects.exists():
            return "the database already has data (run `manage.py seed_demo` to refresh the demo set)"
        return ""
