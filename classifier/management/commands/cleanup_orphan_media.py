import datetime

from django.core.management.base import BaseCommand, CommandError

from classifier.selectors import orphan_media_files
from classifier.services import orphan_media_delete


class Command(BaseCommand):
    help = (
        "List (or with --delete, remove) stored cell images and heatmaps that no database row refers to, "
        "e.g. files written by a request whose transaction rolled back. Dry run by default."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than-hours",
            type=float,
            default=24.0,
            help="only files last modified this long ago (default 24; protects uploads still in flight)",
        )
        parser.add_argument("--delete", action="store_true", help="delete them (default: only list)")

    def handle(self, *args, older_than_hours: float, delete: bool, **options):
        if older_than_hours < 1:
            raise CommandError("--older-than-hours must be at least 1 (uploads in flight have no row yet)")
        age = datetime.timedelta(hours=older_than_hours)
        names = orphan_media_delete(older_than=age) if delete else orphan_media_files(older_than=age)
        for name in names:
            self.stdout.write(name)
        verb = "Deleted" if delete else "Found (dry run; --delete removes them)"
        self.stdout.write(f"{verb} {len(names)} orphan media file(s) older than {older_than_hours:g} h")
