"""Celery application.

The broker comes from settings (``CELERY_BROKER_URL`` / ``REDIS_URL``); by default it is
kombu's filesystem transport, which needs no server so one machine runs everything.
Task state lives in the database (CellImage.status, Prediction rows), not in a result backend.
"""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hematovision.settings")

app = Celery("hematovision")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _make_filesystem_broker_dirs() -> None:
    from django.conf import settings

    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        for key in ("data_folder_in", "data_folder_out", "control_folder"):
            os.makedirs(settings.CELERY_BROKER_TRANSPORT_OPTIONS[key], exist_ok=True)


app.on_after_configure.connect(lambda sender, **kw: _make_filesystem_broker_dirs(), weak=False)
