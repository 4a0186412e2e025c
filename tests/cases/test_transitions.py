import itertools

import pytest

from audit.models import AuditEvent
from cases.errors import InvalidTransition
from cases.models import ALLOWED_TRANSITIONS, SampleStatus
from cases.services import sample_transition

from ..factories import SampleFactory

ALL_PAIRS = list(itertools.product(SampleStatus.values, SampleStatus.values))


@pytest.mark.django_db
@pytest.mark.parametrize(("from_status", "to_status"), ALL_PAIRS)
def test_every_transition_is_allowed_or_refused_as_the_table_says(from_status, to_status):
    sample = SampleFactory(status=from_status)
    if to_status in ALLOWED_TRANSITIONS[from_status]:
        sample_transition(sample=sample, to_status=to_status)
        sample.refresh_from_db()
        assert sample.status == to_status
    else:
        with pytest.raises(InvalidTransition):
            sample_transition(sample=sample, to_status=to_status)
        sample.refresh_from_db()
        assert sample.status == from_status


def test_happy_path_is_in_the_table():
    path = [
        SampleStatus.REGISTERED,
        SampleStatus.IMAGES_UPLOADED,
        SampleStatus.CLASSIFYING,
        SampleStatus.AWAITING_REVIEW,
        SampleStatus.SIGNED,
        SampleStatus.AMENDED,
        SampleStatus.SIGNED,
    ]
    for a, b in itertools.pairwise(path):
        assert b in ALLOWED_TRANSITIONS[a]
    assert ALLOWED_TRANSITIONS[SampleStatus.CANCELLED] == frozenset()
    assert SampleStatus.REGISTERED not in ALLOWED_TRANSITIONS[SampleStatus.SIGNED]


@pytest.mark.django_db
def test_transition_is_audited_with_old_and_new_status_and_reason(technician):
    sample = SampleFactory(status=SampleStatus.REGISTERED)
    sample_transition(sample=sample, to_status=SampleStatus.CANCELLED, actor=technician, reason="Clotted")
    event = AuditEvent.objects.filter(object_type="cases.sample", action="update").latest("pk")
    assert event.old_values["status"] == "registered"
    assert event.new_values["status"] == "cancelled"
    assert event.reason == "Clotted"
    assert event.actor_id == technician.pk
