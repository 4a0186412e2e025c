"""The audit trail's rows and the append-only, hash-chained base that signatures share."""
from __future__ import annotations

from django.conf import settings
from django.db import models, router, transaction
from django.utils import timezone

from .chain import chain_seal


class AppendOnlyQuerySet(models.QuerySet):
    def _refuse(self, verb: str):
        raise PermissionError(f"{self.model._meta.verbose_name_plural} are append-only: rows cannot be {verb}.")

    def update(self, **kwargs):
        self._refuse("updated")

    def bulk_update(self, *args, **kwargs):
        self._refuse("updated")

    def delete(self):
        self._refuse("deleted")

    def bulk_create(self, *args, **kwargs):
        # bulk_create skips save(), where each row gets its place in the hash chain.
        raise PermissionError(f"{self.model._meta.verbose_name_plural} are hash-chained: create rows one at a time.")


class AppendOnlyModel(models.Model):
    """Rows are written once: never changed or deleted through the ORM (a PostgreSQL trigger
    refuses it for any client too, see the migrations). Each table is a hash chain: every row
    carries its place in it, the previous row's hash and its own (``audit.chain.chain_seal``), so
    ``manage.py verify_audit`` finds a row changed, deleted or inserted behind the ORM's back."""

    seq = models.PositiveBigIntegerField(unique=True, editable=False, help_text="Place in the table's hash chain")
    prev_hash = models.CharField(max_length=64, editable=False, help_text="The previous row's hash")
    hash = models.CharField(max_length=64, editable=False, help_text="sha256 of this row's fields, seq and prev_hash")

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError(f"{self._meta.verbose_name_plural} are append-only: rows cannot be changed.")
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        # The chain lock is held until this transaction (or the request's) commits.
        with transaction.atomic(using=using):
            chain_seal(instance=self, using=using)
            super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError(f"{self._meta.verbose_name_plural} are append-only: rows cannot be deleted.")


class AuditEvent(AppendOnlyModel):
    """One append-only audit row. On PostgreSQL a trigger also refuses UPDATE and DELETE."""

    timestamp = models.DateTimeField(default=timezone.now, db_index=True)
    # No database constraint: deleting a user must never touch the audit trail.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_username = models.CharField(max_length=150)
    action = models.CharField(max_length=32, db_index=True)
    object_type = models.CharField(max_length=100, db_index=True)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    object_repr = models.CharField(max_length=200, blank=True)
    old_values = models.JSONField(default=dict, blank=True)
    new_values = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        db_table = "cases_auditevent"  # the table of the app it came from: moved without copying a row
        ordering = ["-timestamp", "-pk"]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.actor_username} {self.action} {self.object_type}"
