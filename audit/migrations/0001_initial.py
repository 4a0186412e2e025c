"""The audit trail, taken over from ``cases`` with its table (``cases.0007``): state only."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('cases', '0007_audit_and_review_apps'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='AuditEvent',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('seq', models.PositiveBigIntegerField(editable=False, help_text="Place in the table's hash chain", unique=True)),
                        ('prev_hash', models.CharField(editable=False, help_text="The previous row's hash", max_length=64)),
                        ('hash', models.CharField(editable=False, help_text="sha256 of this row's fields, seq and prev_hash", max_length=64)),
                        ('timestamp', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ('actor_username', models.CharField(max_length=150)),
                        ('action', models.CharField(db_index=True, max_length=32)),
                        ('object_type', models.CharField(db_index=True, max_length=100)),
                        ('object_id', models.CharField(blank=True, db_index=True, max_length=64)),
                        ('object_repr', models.CharField(blank=True, max_length=200)),
                        ('old_values', models.JSONField(blank=True, default=dict)),
                        ('new_values', models.JSONField(blank=True, default=dict)),
                        ('reason', models.TextField(blank=True)),
                        ('ip', models.GenericIPAddressField(blank=True, null=True)),
                        ('actor', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'cases_auditevent',
                        'ordering': ['-timestamp', '-pk'],
                        'default_permissions': ('view',),
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
