"""django-filter filter sets of the API (query parameters show up in the OpenAPI schema)."""
from __future__ import annotations

import django_filters
from django import forms

from audit.models import AuditEvent
from cases import selectors
from cases.models import Priority, Sample, SampleStatus

MAX_ID = 2**63 - 1  # largest primary key any supported database stores


class IdFilter(django_filters.NumberFilter):
    """A record id: an integer in the database's range (a huge number is a 400, not a crash)."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


class PatientFilter(django_filters.FilterSet):
    search = django_filters.CharFilter(
        method="filter_search", max_length=100,
        label="Every word in the MRN, family or given name, any order (\"Adaeze Okafor\", \"okafor ada\")",
    )

    def filter_search(self, queryset, name, value):
        return selectors.patients_matching(patients=queryset, query=value)


class SampleFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=SampleStatus.choices)
    priority = django_filters.ChoiceFilter(choices=Priority.choices)
    patient = IdFilter(field_name="patient_id")
    accession_number = django_filters.CharFilter(lookup_expr="icontains", max_length=32)
    search = django_filters.CharFilter(
        method="filter_search", max_length=64, label="Accession or external (barcode) number contains"
    )
    received = django_filters.DateFromToRangeFilter(
        field_name="received_at", label="Received on or after / before (received_after, received_before)"
    )
    collected = django_filters.DateFromToRangeFilter(field_name="collected_at")

    class Meta:
        model = Sample
        fields = ["status", "priority", "patient", "accession_number", "search", "received", "collected"]

    def filter_search(self, queryset, name, value):
        return selectors.samples_matching(samples=queryset, query=value)


class AuditEventFilter(django_filters.FilterSet):
    timestamp = django_filters.DateFromToRangeFilter()
    actor_username = django_filters.CharFilter(lookup_expr="icontains", max_length=150)
    action = django_filters.CharFilter(max_length=32)
    object_type = django_filters.CharFilter(lookup_expr="icontains", max_length=100)
    object_id = django_filters.CharFilter(max_length=64)

    class Meta:
        model = AuditEvent
        fields = ["timestamp", "actor_username", "action", "object_type", "object_id"]
