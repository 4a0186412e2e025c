"""Reference ranges per cell type, seeded with adult values from Dacie and Lewis (lab-editable afterwards)."""

from decimal import Decimal

from django.db import migrations, models

SOURCE = (
    "Bain BJ, Bates I, Laffan MA (eds). Dacie and Lewis Practical Haematology, 12th ed. "
    "Elsevier, 2017; ch. 2, reference values for normal adults."
)
# cell class: (percent low, high), (absolute low, high ×10⁹/L)
ADULT_RANGES = {
    "NEUTROPHIL": (("40.0", "80.0"), ("2.00", "7.00")),
    "LYMPHOCYTE": (("20.0", "40.0"), ("1.00", "3.00")),
    "MONOCYTE": (("2.0", "10.0"), ("0.20", "1.00")),
    "EOSINOPHIL": (("1.0", "6.0"), ("0.02", "0.50")),
    "BASOPHIL": (("0.0", "2.0"), ("0.02", "0.10")),
}


def seed(apps, schema_editor):
    ReferenceRange = apps.get_model("review", "ReferenceRange")
    for cell_class, ((p_low, p_high), (a_low, a_high)) in ADULT_RANGES.items():
        ReferenceRange.objects.get_or_create(
            cell_class=cell_class,
            defaults={"percent_low": Decimal(p_low), "percent_high": Decimal(p_high), "absolute_low": Decimal(a_low),
                      "absolute_high": Decimal(a_high), "source": SOURCE},
        )


class Migration(migrations.Migration):

    dependencies = [
        ('review', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='ReferenceRange',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('cell_class', models.CharField(choices=[('EOSINOPHIL', 'Eosinophil'), ('LYMPHOCYTE', 'Lymphocyte'), ('MONOCYTE', 'Monocyte'), ('NEUTROPHIL', 'Neutrophil'), ('BASOPHIL', 'Basophil')], max_length=16, unique=True)),
                ('percent_low', models.DecimalField(decimal_places=1, max_digits=4)),
                ('percent_high', models.DecimalField(decimal_places=1, max_digits=4)),
                ('absolute_low', models.DecimalField(decimal_places=2, help_text='×10⁹/L', max_digits=5)),
                ('absolute_high', models.DecimalField(decimal_places=2, help_text='×10⁹/L', max_digits=5)),
                ('source', models.CharField(help_text='Where the interval comes from (book, edition, table)', max_length=300)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'ordering': ['cell_class'],
                'constraints': [models.CheckConstraint(condition=models.Q(('percent_low__lte', models.F('percent_high'))), name='reference_percent_low_le_high'), models.CheckConstraint(condition=models.Q(('absolute_low__lte', models.F('absolute_high'))), name='reference_absolute_low_le_high')],
            },
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
