from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A HematoVision user. Roles are Django groups (see accounts.roles)."""

    # Printed on electronic signatures and reports; falls back to the full name.
    printed_name = models.CharField(max_length=200, blank=True)
    qualification = models.CharField(max_length=200, blank=True, help_text="e.g. MD, Haematology")

    def get_printed_name(self) -> str:
        return self.printed_name or self.get_full_name() or self.username

    def __str__(self) -> str:
        return self.get_printed_name()
