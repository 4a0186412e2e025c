"""Celery application.

The broker comes from settings (``CELERY_BROKER_URL`` / ``REDIS_URL``); by default it is
kombu's SQLAlchemy transport on a SQLite file, which needs no server so one machine runs everything.
Task state lives in the database (CellImage.status, Prediction rows), not in a result backend.
"""
import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hematovision.settings")

app = Celery("hematovision")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _tune_embedded_broker() -> None:
    from django.conf import settings

    if settings.CELERY_BROKER_URL.startswith("sqla+"):
        from kombu.transport.sqlalchemy import Transport

        Transport.polling_interval = settings.HV_BROKER_POLL_S


app.on_after_configure.connect(lambda sender, **kw: _tune_embedded_broker(), weak=False)


@worker_process_init.connect(weak=False)
def _prepare_worker_process(**kwargs) -> None:
    """Per worker process: one model, ``HV_INFER_THREADS`` threads (run.sh sets cores / processes)
    for LiteRT and TensorFlow alike, and the active model loaded now, so that the first image does
    not wait for it."""
    threads = os.environ.get("HV_INFER_THREADS")
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    from classifier.services import preload_active_model

    preload_active_model()
