from django import forms

from .models import Patient, Priority, Sample, SpecimenType, Stain


class PatientForm(forms.ModelForm):
    class Meta:
        model = Patient
        fields = ["mrn", "family_name", "given_name", "date_of_birth", "sex"]
        widgets = {"date_of_birth": forms.DateInput(attrs={"type": "date"})}


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
    clinical_notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


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
    images = MultipleFileField(label="Cell images")
