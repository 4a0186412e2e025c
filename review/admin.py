from django.contrib import admin
from django.core.exceptions import ValidationError

from .models import ReferenceRange
from .services import reference_range_update


@admin.register(ReferenceRange)
class ReferenceRangeAdmin(admin.ModelAdmin):
    """The lab's reference ranges: one per cell type (seeded by migration ``review.0002``), edited here."""

    list_display = (
        "cell_class", "percent_low", "percent_high", "absolute_low", "absolute_high", "source", "updated_at"
    )
    fields = ("cell_class", "percent_low", "percent_high", "absolute_low", "absolute_high", "source")
    readonly_fields = ("cell_class",)

    def has_add_permission(self, request):
        return False  # one range per cell class, from the migration

    def has_delete_permission(self, request, obj=None):
        return False  # a class without a range would print unflagged

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            reference_range_update(
                actor=request.user, reference_range=obj, percent_low=data["percent_low"],
                percent_high=data["percent_high"], absolute_low=data["absolute_low"],
                absolute_high=data["absolute_high"], source=data["source"],
            )
        except ValidationError as exc:  # checked by the form's model validation first; kept for a race
            self.message_user(request, " ".join(exc.messages), level="error")
