from __future__ import annotations

import datetime

from django import forms
from django.utils import timezone

from .models import Patient, Priority, Sample, SpecimenType, Stain, UploadKind


class PatientForm(forms.ModelForm):
    # Shown only once the service has found a likely duplicate (same name and date of birth).
    confirm_duplicate = forms.BooleanField(
        required=False, widget=forms.HiddenInput,
        label="This is a different person: register anyway",
    )

    class Meta:
        model = Patient
        fields = ["mrn", "family_name", "given_name", "date_of_birth", "sex"]
        widgets = {"date_of_birth": forms.DateInput(attrs={"type": "date"})}

    def ask_to_confirm_duplicate(self) -> None:
        self.fields["confirm_duplicate"].widget = forms.CheckboxInput()


class SampleForm(forms.Form):
    collected_at = forms.DateTimeField(widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    received_at = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Leave empty for now.",
    )
    specimen_type = forms.ChoiceField(choices=SpecimenType.choices, initial=SpecimenType.PERIPHERAL_BLOOD)
    stain = forms.ChoiceField(choices=Stain.choices, initial=Stain.MAY_GRUNWALD_GIEMSA)
    priority = forms.ChoiceField(choices=Priority.choices, initial=Priority.ROUTINE)
    wbc_count = Sample._meta.get_field("wbc_count").formfield(required=False)
    ordering_physician = forms.CharField(max_length=200, required=False, label="Ordering physician")
    requesting_ward = forms.CharField(max_length=100, required=False, label="Requesting ward")
    external_accession = forms.CharField(
        max_length=64, required=False, label="External accession / barcode number",
        help_text="The number on the tube from the ordering system, if any.",
    )
    clinical_notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


class SampleEditForm(SampleForm):
    """The sample's details as they can still be corrected, with why."""

    received_at = forms.DateTimeField(widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    reason = forms.CharField(
        max_length=500, required=False, label="Reason for the correction",
        help_text="Kept in the audit trail with the old and new values.",
    )

    @classmethod
    def for_sample(cls, sample: Sample) -> SampleEditForm:
        fmt = "%Y-%m-%dT%H:%M"
        return cls(initial={
            "collected_at": timezone.localtime(sample.collected_at).strftime(fmt),
            "received_at": timezone.localtime(sample.received_at).strftime(fmt),
            **{name: getattr(sample, name) for name in (
                "specimen_type", "stain", "priority", "wbc_count", "ordering_physician", "requesting_ward",
                "external_accession", "clinical_notes",
            )},
        })

    def changes(self, sample: Sample) -> dict:
        """The submitted values that differ from the sample's (times to the minute the form shows)."""
        def same(old, new) -> bool:
            if isinstance(old, datetime.datetime) and isinstance(new, datetime.datetime):
                return old.replace(second=0, microsecond=0) == new.replace(second=0, microsecond=0)
            return old == new

        return {
            name: value for name, value in self.cleaned_data.items()
            if name != "reason" and not same(getattr(sample, name), value)
        }


class SampleCancelForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), max_length=500, label="Reason for cancelling",
        help_text="For example: sample clotted, wrong patient, duplicate request.",
    )


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"multiple": True, "accept": "image/*"}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, (list, tuple)):
            return [single(d, initial) for d in data]
        return [single(data, initial)]


class ImageUploadForm(forms.Form):
    images = MultipleFileField(label="Cell images or whole fields")
    kind = forms.ChoiceField(
        choices=UploadKind.choices, initial=UploadKind.AUTO, widget=forms.RadioSelect, required=False,
        label="The files are",
    )
