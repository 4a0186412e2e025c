"""End to end with real worker processes, the real broker (Redis when REDIS_URL is set,
else the embedded SQLite broker) and the shipped model."""
import datetime

import pytest
from kombu.exceptions import OperationalError as BrokerDown

from cases.models import CellImage, ImageStatus, Sample, SampleStatus
from cases.services import images_upload
from classifier import services
from classifier.inference import default_card_path, default_model_path
from classifier.models import Prediction
from classifier.tasks import classify_images
from hematovision.celery import app

from ..factories import SampleFactory, UserFactory
from .workers import Worker, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CLASSIFY_TIMEOUT = 180


@pytest.fixture
def setup(tmp_path, settings):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    app.control.purge()
    services.model_version_register(model_path=default_model_path(), card_path=default_card_path(), activate=True)
    technician = UserFactory(role="technician")
    workers = []

    def start_worker():
        worker = Worker(tmp_path / f"worker{len(workers)}.log")
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield technician, start_worker
    for w in workers:
        w.stop()


def _upload(technician, cell_files, n):
    sample = SampleFactory()
    result = images_upload(actor=technician, sample=sample, files=[(p.name, p.read_bytes()) for p in cell_files[:n]])
    assert len(result.accepted) == n
    return sample, [i.pk for i in result.accepted]


def _all_classified(ids):
    return CellImage.objects.filter(pk__in=ids, status=ImageStatus.CLASSIFIED).count() == len(ids)


def test_upload_is_classified_end_to_end(setup, cell_files):
    technician, start_worker = setup
    worker = start_worker()
    sample, ids = _upload(technician, cell_files, 6)
    wait_for(lambda: _all_classified(ids), timeout=CLASSIFY_TIMEOUT, message=f"classification\n{worker.log()}")
    predictions = Prediction.objects.filter(image_id__in=ids)
    assert predictions.count() == 6
    for p in predictions:
        assert abs(sum(p.probabilities.values()) - 1) < 1e-3
        assert p.inference_ms > 0
    # the sample moves on once the task has stored the batch (right after its last image)
    wait_for(
        lambda: Sample.objects.get(pk=sample.pk).status == SampleStatus.AWAITING_REVIEW,
        timeout=30, message=f"sample status\n{worker.log()}",
    )
    # the Grad-CAM second pass follows on the heatmaps queue
    wait_for(
        lambda: not Prediction.objects.filter(image_id__in=ids, heatmap="").exists(),
        timeout=CLASSIFY_TIMEOUT, message=f"heatmaps\n{worker.log()}",
    )


def test_worker_killed_mid_task_then_image_is_classified_by_the_next_worker(setup, cell_files):
    technician, start_worker = setup
    first = start_worker()
    _, ids = _upload(technician, cell_files, 2)
    # The worker claims the images, then loads the model: kill it in between.
    wait_for(
        lambda: CellImage.objects.filter(pk__in=ids, status=ImageStatus.CLASSIFYING).exists(),
        timeout=60, interval=0.05, message="the worker to start the task",
    )
    first.kill()
    assert not _all_classified(ids)
    second = start_worker()
    # Redis redelivers unacked messages only after the visibility timeout; the sweeper
    # (celery beat runs it every minute) finds the stuck images first.
    resent = services.sweep_stuck_images(
        queued_older_than=datetime.timedelta(0), classifying_older_than=datetime.timedelta(0)
    )
    assert resent == 2
    wait_for(
        lambda: _all_classified(ids), timeout=CLASSIFY_TIMEOUT,
        message=f"classification after the kill\n{second.log()}",
    )
    assert Prediction.objects.filter(image_id__in=ids).count() == 2


def test_upload_while_broker_is_down_is_classified_after_it_returns(setup, cell_files, monkeypatch):
    technician, start_worker = setup

    def broker_down(image_ids):
        raise BrokerDown("Error 111 connecting to the broker. Connection refused.")

    monkeypatch.setattr("classifier.services._send_to_broker", broker_down)
    _, ids = _upload(technician, cell_files, 2)
    assert set(CellImage.objects.filter(pk__in=ids).values_list("status", flat=True)) == {ImageStatus.QUEUED}
    monkeypatch.undo()
    start_worker()
    resent = services.sweep_stuck_images(
        queued_older_than=datetime.timedelta(0), classifying_older_than=datetime.timedelta(0)
    )
    assert resent == 2
    wait_for(lambda: _all_classified(ids), timeout=CLASSIFY_TIMEOUT, message="classification after broker returns")


def test_redelivered_messages_make_exactly_one_prediction(setup, cell_files):
    technician, start_worker = setup
    _, ids = _upload(technician, cell_files, 3)
    classify_images.delay(ids)  # the same message again, as a redelivery would
    classify_images.delay(ids[:1])
    worker = start_worker()
    wait_for(lambda: _all_classified(ids), timeout=CLASSIFY_TIMEOUT, message="classification")
    # all three messages are processed (the duplicates find the work done)
    wait_for(
        lambda: worker.log_path.read_text().count("succeeded in") >= 3, timeout=60, message=f"3 tasks\n{worker.log()}"
    )
    assert Prediction.objects.filter(image_id__in=ids).count() == 3
    for pk in ids:
        assert Prediction.objects.filter(image_id=pk).count() == 1
