"""cleanup_orphan_media: files no row refers to are listed, and deleted only on request."""

from __future__ import annotations

import os
import time
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from cases.services import images_upload
from tests.factories import SampleFactory, image_bytes


def _age(name: str, hours: float) -> Path:
    path = Path(settings.MEDIA_ROOT) / name
    old = time.time() - hours * 3600
    os.utime(path, (old, old))
    return path


def _orphan(name: str, hours: float) -> Path:
    path = Path(settings.MEDIA_ROOT) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"left behind by a rolled-back request")
    return _age(name, hours)


@pytest.fixture
def media(db, technician):
    sample = SampleFactory()
    (kept,) = images_upload(actor=technician, sample=sample, files=[("a.png", image_bytes())]).accepted
    _age(kept.file.name, 48)  # an old file that IS referenced
    return {
        "kept": Path(settings.MEDIA_ROOT) / kept.file.name,
        "old_cell": _orphan("cells/2026/01/deadbeef.png", 48),
        "old_heatmap": _orphan("heatmaps/2026/01/cafe.png", 30),
        "fresh": _orphan("cells/2026/11/inflight.png", 0.1),  # an upload still in flight
    }


def _run(*args) -> str:
    out = StringIO()
    call_command("cleanup_orphan_media", *args, stdout=out)
    return out.getvalue()


def test_dry_run_lists_old_orphans_only_and_deletes_nothing(media):
    out = _run()
    assert "cells/2026/01/deadbeef.png" in out and "heatmaps/2026/01/cafe.png" in out
    assert "inflight" not in out and media["kept"].name not in out
    assert "Found (dry run" in out and " 2 orphan" in out
    assert all(p.exists() for p in media.values())


def test_delete_removes_old_orphans_and_keeps_referenced_and_young_files(media):
    out = _run("--delete")
    assert "Deleted 2 orphan" in out
    assert not media["old_cell"].exists() and not media["old_heatmap"].exists()
    assert media["kept"].exists() and media["fresh"].exists()


def test_age_limit_is_configurable_and_refuses_a_dangerously_low_value(media):
    assert " 1 orphan" in _run("--older-than-hours", "40")  # only the 48 h cell orphan
    with pytest.raises(CommandError, match="at least 1"):
        _run("--older-than-hours", "0.5")
