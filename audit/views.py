"""The audit trail page (admins): every event in words, with who, when, what and why."""
from __future__ import annotations

import django_filters
from django import forms
from django.core.paginator import Paginator
from django.shortcuts import render
from django.urls import reverse
from django.views import View

from accounts.mixins import RoleRequiredMixin
from accounts.roles import Role

from . import narrative, selectors
from .models import AuditEvent

DATE = forms.DateInput(attrs={"type": "date"})


class AuditFilter(django_filters.FilterSet):
    actor_username = django_filters.CharFilter(lookup_expr="icontains", label="Who (user name)")
    action = django_filters.ChoiceFilter(label="Action", empty_label="Any action")
    object_type = django_filters.CharFilter(lookup_expr="icontains", label="Record type", max_length=100)
    date_from = django_filters.DateFilter(field_name="timestamp", lookup_expr="date__gte", label="From", widget=DATE)
    date_to = django_filters.DateFilter(field_name="timestamp", lookup_expr="date__lte", label="To", widget=DATE)
    accession = django_filters.CharFilter(method="filter_accession", label="Sample accession", max_length=32)
    object_id = django_filters.CharFilter(lookup_expr="exact", label="Record id", max_length=64)

    class Meta:
        model = AuditEvent
        fields = ["actor_username", "action", "object_type", "date_from", "date_to", "accession", "object_id"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["action"].extra["choices"] = [
            (a, a.replace("_", " ").capitalize()) for a in selectors.audit_actions()
        ]
        self.samples: list[tuple[str, str]] = []

    def filter_accession(self, queryset, name, value):
        self.samples = selectors.samples_for_accession(accession=value)
        return queryset.filter(pk__in=selectors.sample_trail(sample_ids=[pk for pk, _ in self.samples]).values("pk"))


class AuditTrailView(RoleRequiredMixin, View):
    allowed_roles = (Role.ADMIN,)

    def get(self, request):
        flt = AuditFilter(request.GET, queryset=selectors.audit_events())
        # A filter the form refuses (a date that is no date) shows its error and no events.
        events = flt.qs if flt.is_valid() else AuditEvent.objects.none()
        page = Paginator(events, 50).get_page(request.GET.get("page"))
        query = request.GET.copy()
        query.pop("page", None)
        return render(
            request,
            "audit/audit_list.html",
            {
                "filter": flt,
                "page": page,
                "entries": narrative.narrate(page.object_list, group=False),
                "samples": flt.samples,
                "query": query.urlencode(),
                "base_url": reverse("audit-trail"),
            },
        )
