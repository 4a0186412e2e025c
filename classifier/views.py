"""Model pages: versions and candidate runs, the comparison, shadow, signed activation.

Doctors and admins read them (the comparison is evidence both judge); only admins start runs,
put a version in shadow and activate. Every write is one ``classifier.adaptation`` call.
"""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views import View

from accounts.lockout import request_ip
from accounts.mixins import RoleRequiredMixin
from accounts.roles import Role, has_role
from cases.errors import InvalidState

from . import adaptation, selectors
from .models import CandidateRun, ModelVersion

READERS = (Role.DOCTOR, Role.ADMIN)
# What a page shows as a message next to its form, rather than as an error page.
REFUSALS = (InvalidState, ValidationError, adaptation.WrongPassword)


def _message(exc: Exception) -> str:
    return " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)


def _list_context(request) -> dict:
    return {
        "versions": selectors.model_versions(),
        "runs": selectors.candidate_runs()[:20],
        "activations": selectors.model_activations()[:20],
        "readiness": adaptation.readiness(),
        "unfinished": selectors.candidate_run_unfinished(),
        "can_manage": has_role(request.user, Role.ADMIN),
    }


class ModelListView(RoleRequiredMixin, View):
    allowed_roles = READERS

    def get(self, request):
        return render(request, "classifier/model_list.html", _list_context(request))


class CandidateStartView(RoleRequiredMixin, View):
    allowed_roles = (Role.ADMIN,)

    def post(self, request):
        try:
            run = adaptation.candidate_run_start(actor=request.user)
        except REFUSALS as exc:
            messages.error(request, _message(exc))
            return render(request, "classifier/model_list.html", _list_context(request), status=400)
        messages.success(request, f"Candidate run {run.pk} is queued.")
        return redirect("candidate-detail", pk=run.pk)


class CandidateDetailView(RoleRequiredMixin, View):
    allowed_roles = READERS

    def get(self, request, pk: int):
        run = get_object_or_404(selectors.candidate_runs(), pk=pk)
        return render(
            request, "classifier/candidate_detail.html",
            {"run": run, "can_manage": has_role(request.user, Role.ADMIN)},
        )


class CandidateCancelView(RoleRequiredMixin, View):
    allowed_roles = (Role.ADMIN,)

    def post(self, request, pk: int):
        run = get_object_or_404(CandidateRun, pk=pk)
        try:
            adaptation.candidate_run_cancel(actor=request.user, run=run)
            messages.success(request, f"Candidate run {run.pk} was cancelled.")
        except REFUSALS as exc:
            messages.error(request, _message(exc))
        return redirect("candidate-detail", pk=run.pk)


def _comparison_context(request, version: ModelVersion) -> dict:
    comparison = adaptation.comparison_of(version)
    rows = []
    if "active" in comparison:
        for cls in comparison["classes"]:
            a, c = comparison["active"]["recall"].get(cls), comparison["candidate"]["recall"].get(cls)
            if a is not None or c is not None:
                rows.append({"class": cls, "active": a, "candidate": c})
    return {
        "version": version,
        "comparison": comparison,
        "recall_rows": rows,
        "active": selectors.active_model_version(),
        "can_manage": has_role(request.user, Role.ADMIN),
    }


class ModelComparisonView(RoleRequiredMixin, View):
    allowed_roles = READERS

    def get(self, request, pk: int):
        version = get_object_or_404(selectors.model_versions(), pk=pk)
        return render(request, "classifier/comparison.html", _comparison_context(request, version))


class ModelShadowView(RoleRequiredMixin, View):
    allowed_roles = (Role.ADMIN,)

    def post(self, request, pk: int):
        version = get_object_or_404(ModelVersion, pk=pk)
        try:
            if request.POST.get("shadow", "on") == "off":
                adaptation.model_version_shadow_clear(actor=request.user, version=version)
                messages.success(request, f"{version.name} no longer runs in shadow.")
            else:
                adaptation.model_version_shadow_set(actor=request.user, version=version)
                messages.success(request, f"{version.name} now classifies new images in shadow.")
        except REFUSALS as exc:
            messages.error(request, _message(exc))
        return redirect("model-list")


class ModelActivateView(RoleRequiredMixin, View):
    """The signed activation (or rollback) form, beside the comparison it is based on."""

    allowed_roles = (Role.ADMIN,)

    def get(self, request, pk: int):
        version = get_object_or_404(selectors.model_versions(), pk=pk)
        return render(request, "classifier/activate.html", _comparison_context(request, version))

    def post(self, request, pk: int):
        version = get_object_or_404(selectors.model_versions(), pk=pk)
        try:
            activation = adaptation.model_version_activate_signed(
                actor=request.user, version=version, password=request.POST.get("password", ""),
                reason=request.POST.get("reason", ""), ip_address=request_ip(request),
            )
        except REFUSALS as exc:
            messages.error(request, _message(exc))
            return render(request, "classifier/activate.html", _comparison_context(request, version), status=400)
        messages.success(request, f"{activation.get_kind_display()}: {version.name} is now the active model.")
        return redirect("model-list")
