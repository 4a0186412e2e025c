import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.roles import Role, ensure_role_groups
from accounts.services import user_roles_set

DEMO_USERS = [
    ("tech", Role.TECHNICIAN, "Tara Technician", ""),
    ("doctor", Role.DOCTOR, "Dr Dana Doctor", "MD, Haematology"),
    ("doctor2", Role.DOCTOR, "Dr Sam Second", "MD, Haematology"),
    ("admin", Role.ADMIN, "Alex Admin", ""),
]


class Command(BaseCommand):
    help = "Create (or reset) one demo user per role and print their passwords."

    def add_arguments(self, parser):
        parser.add_argument("--password", help="Use this password for every demo user instead of random ones.")

    @transaction.atomic
    def handle(self, *args, password=None, **options):
        ensure_role_groups()
        User = get_user_model()
        self.stdout.write("Demo users (username / password / role):")
        for username, role, printed_name, qualification in DEMO_USERS:
            user, _ = User.objects.get_or_create(username=username)
            user.printed_name = printed_name
            user.qualification = qualification
            user.is_staff = role == Role.ADMIN
            user.is_superuser = False  # superusers are made with createsuperuser, never as a demo user
            pw = password or f"{username}-{secrets.token_urlsafe(9)}"
            user.set_password(pw)
            user.save()
            user_roles_set(actor=None, user=user, roles=[role])
            self.stdout.write(f"  {username:<8} {pw:<24} {role.value}")
