"""Cell reviews, signatures and amendments, taken over from ``cases`` with their tables (``cases.0007``): state only."""

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
                    name='CellReview',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('final_class', models.CharField(choices=[('EOSINOPHIL', 'Eosinophil'), ('LYMPHOCYTE', 'Lymphocyte'), ('MONOCYTE', 'Monocyte'), ('NEUTROPHIL', 'Neutrophil'), ('BASOPHIL', 'Basophil'), ('EXCLUDED', 'Not classified / excluded')], max_length=16)),
                        ('ai_class', models.CharField(blank=True, help_text="The AI's class when reviewed", max_length=16)),
                        ('ai_unidentified', models.BooleanField(default=False)),
                        ('comment', models.TextField(blank=True)),
                        ('reviewed_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('image', models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name='review', to='cases.cellimage')),
                        ('reviewed_by', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'cases_cellreview',
                    },
                ),
                migrations.CreateModel(
                    name='Signature',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('seq', models.PositiveBigIntegerField(editable=False, help_text="Place in the table's hash chain", unique=True)),
                        ('prev_hash', models.CharField(editable=False, help_text="The previous row's hash", max_length=64)),
                        ('hash', models.CharField(editable=False, help_text="sha256 of this row's fields, seq and prev_hash", max_length=64)),
                        ('printed_name', models.CharField(max_length=200)),
                        ('meaning', models.CharField(choices=[('reviewed_and_approved', 'Reviewed and approved')], max_length=32)),
                        ('signed_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('version', models.PositiveIntegerField(help_text='1 for the first sign-off, 2 after the first amendment …')),
                        ('amendment_reason', models.TextField(blank=True)),
                        ('snapshot', models.JSONField(help_text='The signed result: differential, cells, comments, model versions')),
                        ('snapshot_sha256', models.CharField(max_length=64)),
                        ('sample', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='signatures', to='cases.sample')),
                        ('signer', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'cases_signature',
                        'ordering': ['sample', 'version'],
                    },
                ),
                migrations.CreateModel(
                    name='Amendment',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('reason', models.TextField()),
                        ('requested_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('requested_by', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('sample', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='amendments', to='cases.sample')),
                        ('previous_signature', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='review.signature')),
                    ],
                    options={
                        'db_table': 'cases_amendment',
                    },
                ),
                migrations.AddConstraint(
                    model_name='signature',
                    constraint=models.UniqueConstraint(fields=('sample', 'version'), name='one_signature_per_version'),
                ),
            ],
            database_operations=[],
        ),
    ]
