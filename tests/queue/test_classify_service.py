import datetime

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from cases.models import CellImage, ImageStatus, SampleStatus
from cases.services import images_upload
from classifier import services
from classifier.models import ModelVersion, Prediction

from ..factories import ModelVersionFactory


def _upload(technician, sample, cell_files, n=3):
    return images_upload(actor=technician, sample=sample, files=[(p.name, p.read_bytes()) for p in cell_files[:n]])


@pytest.mark.django_db
def test_batch_is_classified_and_sample_moves_to_awaiting_review(technician, sample, cell_files, fake_model):
    version, _ = fake_model
    ids = [i.pk for i in _upload(technician, sample, cell_files).accepted]
    outcome = services.classify_images(image_ids=ids)
    assert outcome.classified == ids and not outcome.failed
    for image in CellImage.objects.filter(pk__in=ids):
        assert image.status == ImageStatus.CLASSIFIED
        prediction = image.predictions.get()
        assert prediction.model_version == version
        assert prediction.predicted_class == "EOSINOPHIL"
        assert set(prediction.probabilities) == {"EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"}
        assert not prediction.heatmap  # classification never waits on Grad-CAM
        assert prediction.cell_found is True
    sample.refresh_from_db()
    assert sample.status == SampleStatus.AWAITING_REVIEW
    statuses = list(
        AuditEvent.objects.filter(object_type="cases.sample", action="update")
        .order_by("pk")
        .values_list("new_values__status", flat=True)
    )
    assert statuses == ["images_uploaded", "classifying", "awaiting_review"]
    assert AuditEvent.objects.filter(object_type="classifier.prediction", action="create").count() == 3


@pytest.mark.django_db
def test_redelivered_task_creates_no_second_prediction(technician, sample, cell_files, fake_model):
    _, clf = fake_model
    ids = [i.pk for i in _upload(technician, sample, cell_files).accepted]
    services.classify_images(image_ids=ids)
    again = services.classify_images(image_ids=ids)
    assert again.skipped == ids and not again.classified
    assert Prediction.objects.count() == 3
    assert clf.calls == 1


@pytest.mark.django_db
def test_image_left_classifying_by_a_killed_worker_is_classified_once(technician, sample, cell_files, fake_model):
    ids = [i.pk for i in _upload(technician, sample, cell_files).accepted]
    CellImage.objects.filter(pk__in=ids).update(status=ImageStatus.CLASSIFYING)
    services.classify_images(image_ids=ids)
    assert Prediction.objects.count() == 3
    assert set(CellImage.objects.values_list("status", flat=True)) == {ImageStatus.CLASSIFIED}


@pytest.mark.django_db
def test_bad_image_fails_alone_and_the_rest_goes_on(technician, sample, cell_files, fake_model):
    images = _upload(technician, sample, cell_files).accepted
    broken = images[1]
    with open(broken.file.path, "wb") as fh:
        fh.write(b"corrupted on disk")
    services.classify_images(image_ids=[i.pk for i in images])
    broken.refresh_from_db()
    assert broken.status == ImageStatus.FAILED
    assert "could not be read" in broken.error_message
    assert CellImage.objects.filter(status=ImageStatus.CLASSIFIED).count() == 2
    sample.refresh_from_db()
    assert sample.status == SampleStatus.AWAITING_REVIEW


@pytest.mark.django_db
def test_no_active_model_keeps_images_queued(technician, sample, cell_files):
    ids = [i.pk for i in _upload(technician, sample, cell_files, n=1).accepted]
    with pytest.raises(services.NoActiveModel):
        services.classify_images(image_ids=ids)
    assert CellImage.objects.get().status == ImageStatus.QUEUED


@pytest.mark.django_db
def test_sweeper_resends_stuck_images_and_gives_up_after_max_attempts(
    technician, sample, cell_files, fake_model, request, settings
):
    images = _upload(technician, sample, cell_files).accepted
    request.node.enqueued.clear()
    old = timezone.now() - datetime.timedelta(hours=1)
    CellImage.objects.filter(pk=images[0].pk).update(status_changed_at=old)  # queued, message lost
    CellImage.objects.filter(pk=images[1].pk).update(status=ImageStatus.CLASSIFYING, status_changed_at=old)
    CellImage.objects.filter(pk=images[2].pk).update(
        status=ImageStatus.CLASSIFYING, status_changed_at=old, attempts=settings.HV_MAX_CLASSIFY_ATTEMPTS
    )
    assert services.sweep_stuck_images() == 2
    assert request.node.enqueued == [[images[0].pk, images[1].pk]]
    gave_up = CellImage.objects.get(pk=images[2].pk)
    assert gave_up.status == ImageStatus.FAILED and "after 5 attempts" in gave_up.error_message
    # just re-sent: the next sweep leaves them alone until the timeout passes again
    assert services.sweep_stuck_images() == 0


@pytest.mark.django_db
def test_new_version_reclassifies_and_each_prediction_records_its_version(technician, sample, cell_files, fake_model):
    v1, _ = fake_model
    ids = [i.pk for i in _upload(technician, sample, cell_files, n=1).accepted]
    services.classify_images(image_ids=ids)
    v2 = ModelVersionFactory(name="fake-v2", sha256="f" * 64, threshold=0.5)
    services.model_version_activate(version=v2, actor=None, reason="test")
    assert list(ModelVersion.objects.filter(is_active=True)) == [v2]
    CellImage.objects.filter(pk__in=ids).update(status=ImageStatus.QUEUED)
    services.classify_images(image_ids=ids)
    assert sorted(Prediction.objects.values_list("model_version__name", flat=True)) == ["fake-v1", "fake-v2"]
    assert AuditEvent.objects.filter(object_type="classifier.modelversion", action="update", reason="test").exists()


@pytest.mark.django_db
def test_django_admin_offers_no_unsigned_activation(client, admin_user, fake_model):
    """Activation is a signed decision (classifier.adaptation): the admin site has no action for it."""
    from django.urls import reverse

    v1, _ = fake_model
    v2 = ModelVersionFactory(name="fake-v2", threshold=0.4)
    client.force_login(admin_user)
    client.post(
        reverse("admin:classifier_modelversion_changelist"), {"action": "activate", "_selected_action": [v2.pk]}
    )
    v1.refresh_from_db()
    v2.refresh_from_db()
    assert v1.is_active and not v2.is_active


@pytest.mark.django_db
def test_technician_cannot_activate_models(client, technician, fake_model):
    from django.urls import reverse

    client.force_login(technician)
    assert client.get(reverse("admin:classifier_modelversion_changelist")).status_code == 302


@pytest.mark.django_db(transaction=True)
def test_heatmaps_are_a_second_pass_after_classification(request, technician, sample, cell_files, fake_model):
    """Classification stores predictions without heatmaps and asks for them on the heatmaps
    queue; the second pass stores each one once, for the class the prediction suggested."""
    _, clf = fake_model
    ids = [i.pk for i in _upload(technician, sample, cell_files).accepted]
    services.classify_images(image_ids=ids)
    predictions = list(Prediction.objects.filter(image_id__in=ids))
    assert [sorted(ids) for ids in request.node.enqueued_heatmaps] == [sorted(p.pk for p in predictions)]
    assert services.compute_heatmaps(prediction_ids=[p.pk for p in predictions]) == len(predictions)
    assert clf.heatmap_calls == [["EOSINOPHIL"] * len(predictions)]
    for p in Prediction.objects.filter(image_id__in=ids):
        assert p.heatmap.read().startswith(b"\x89PNG")
    # a redelivered message changes nothing
    assert services.compute_heatmaps(prediction_ids=[p.pk for p in predictions]) == 0
    assert len(clf.heatmap_calls) == 1


@pytest.mark.django_db
def test_heatmaps_wait_until_every_cell_of_the_sample_is_classified(
    request, technician, sample, cell_files, fake_model, settings
):
    settings.HV_CLASSIFY_BATCH_SIZE = 2  # the first task must leave the third cell queued
    ids = [i.pk for i in _upload(technician, sample, cell_files).accepted]
    services.classify_images(image_ids=ids[:2])
    assert request.node.enqueued_heatmaps == []  # one cell still waits for classification
    services.classify_images(image_ids=ids[2:])
    requested = [pk for batch in request.node.enqueued_heatmaps for pk in batch]
    assert sorted(requested) == sorted(Prediction.objects.filter(image_id__in=ids).values_list("pk", flat=True))


@pytest.mark.django_db
def test_a_task_fills_its_batch_with_queued_images_and_their_own_tasks_skip_them(
    technician, sample, cell_files, fake_model
):
    _, clf = fake_model
    ids = [i.pk for i in _upload(technician, sample, cell_files, n=5).accepted]
    first = services.classify_images(image_ids=ids[:1])
    assert sorted(first.classified) == sorted(ids) and clf.calls == 1  # one model call for the five
    later = services.classify_images(image_ids=ids[1:2])
    assert later.classified == [] and later.skipped == [ids[1]] and clf.calls == 1
    assert Prediction.objects.filter(image_id__in=ids).count() == 5
