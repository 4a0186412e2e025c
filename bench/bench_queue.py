"""Upload → prediction benchmark through the real path, with real worker processes.

    .venv/bin/python bench/bench_queue.py --rate 10 --seconds 60 --workers 2

Uses its own SQLite database and embedded SQLite broker under a temporary folder (or the
DATABASE_URL / REDIS_URL in the environment), registers the shipped model, starts K
Celery worker processes, then POSTs one real cell image per upload to the sample upload
view at the given rate (Django test client, signed in as a technician: view, validation,
storage and on-commit enqueue are the production code). Prints throughput, p50/p95/max
time from upload to stored prediction, and how many images were lost (never classified).
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CELLS = sorted((REPO / "tests" / "fixtures" / "cells").glob("*/*.jpeg"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=10.0, help="uploads per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to upload")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (concurrency 1 each)")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="hv-bench-"))
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{tmp / 'bench.sqlite3'}")
    os.environ["MEDIA_ROOT"] = str(tmp / "media")
    os.environ["HV_BROKER_DIR"] = str(tmp / "broker")
    os.environ.setdefault("HV_CLASSIFY_BATCH_SIZE", "8")
    os.environ.setdefault("HV_TF_THREADS", "1")  # as run.sh: one TensorFlow thread per worker process
    os.environ["DJANGO_SETTINGS_MODULE"] = "hematovision.settings"
    sys.path.insert(0, str(REPO))

    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    from accounts.models import User
    from cases.models import CellImage, ImageStatus, Patient, Sample
    from classifier.inference import default_card_path, default_model_path
    from classifier.models import Prediction
    from classifier.services import model_version_register

    call_command("migrate", verbosity=0)
    model_version_register(model_path=default_model_path(), card_path=default_card_path(), activate=True)
    call_command("seed_demo", stdout=io.StringIO())
    tech = User.objects.get(username="tech")
    patient = Patient.objects.create(mrn=f"BENCH-{time.time_ns()}", family_name="Bench", given_name="Mark",
                                     date_of_birth="1980-01-01")
    from django.utils import timezone

    sample = Sample.objects.create(accession_number=f"BENCH-{time.time_ns()}", patient=patient,
                                   collected_at=timezone.now())

    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    logs, workers = [], []
    for i in range(args.workers):
        log = open(tmp / f"worker{i}.log", "wb")  # noqa: SIM115
        logs.append(log)
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "hematovision", "worker", "--concurrency", "1",
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--hostname", f"bench{i}@%h"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        # Warm up: one image per worker so model loading is not counted as latency.
        client = Client()
        client.force_login(tech)
        url = reverse("sample-upload", args=[sample.pk])
        warm_sample = Sample.objects.create(accession_number=f"WARM-{time.time_ns()}", patient=patient,
                                            collected_at=timezone.now())
        warm_url = reverse("sample-upload", args=[warm_sample.pk])
        for i in range(args.workers * 2):
            client.post(warm_url, {"images": [_variant(i + 10_000)]})
        t0 = time.monotonic()
        while CellImage.objects.filter(sample=warm_sample).exclude(status=ImageStatus.CLASSIFIED).exists():
            if time.monotonic() - t0 > 180:
                raise SystemExit("workers did not warm up; see " + str(tmp))
            time.sleep(0.5)
        print(f"workers warm after {time.monotonic() - t0:.1f}s", flush=True)

        n = int(args.rate * args.seconds)
        start = time.monotonic()
        for i in range(n):
            target = start + i / args.rate
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            response = client.post(url, {"images": [_variant(i)]})
            assert response.status_code == 302, response.status_code
        upload_elapsed = time.monotonic() - start
        accepted = CellImage.objects.filter(sample=sample).count()
        deadline = time.monotonic() + args.drain_timeout
        while time.monotonic() < deadline:
            pending = CellImage.objects.filter(sample=sample).exclude(status=ImageStatus.CLASSIFIED).count()
            if pending == 0:
                break
            time.sleep(0.5)
        total_elapsed = time.monotonic() - start
        latencies = sorted(
            (p.created_at - p.image.uploaded_at).total_seconds()
            for p in Prediction.objects.filter(image__sample=sample).select_related("image")
        )
        lost = accepted - len(latencies)
        n_pred = len(latencies)
        print(f"uploads: {n} requested, {accepted} accepted in {upload_elapsed:.1f}s "
              f"({accepted / upload_elapsed:.2f}/s), workers: {args.workers}")
        print(f"classified: {n_pred} in {total_elapsed:.1f}s ({n_pred / total_elapsed:.2f} images/s)")
        if latencies:
            p95 = latencies[min(n_pred - 1, int(0.95 * n_pred))]
            print(f"upload→prediction: p50 {statistics.median(latencies):.2f}s  p95 {p95:.2f}s  "
                  f"max {latencies[-1]:.2f}s")
        inf = list(Prediction.objects.filter(image__sample=sample).values_list("inference_ms", flat=True))
        if inf:
            print(f"model time per image (batched): median {statistics.median(inf):.1f} ms")
        print(f"lost (accepted but not classified): {lost}")
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
        for log in logs:
            log.close()


def _variant(i: int):
    """A distinct real cell image per upload (a pixel nudged so the sha256 differs)."""
    from PIL import Image

    img = Image.open(CELLS[i % len(CELLS)]).convert("RGB")
    img.putpixel((i % img.width, (i // img.width) % img.height), (i % 256, (i // 256) % 256, 7))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    buf.seek(0)
    buf.name = f"cell-{i:05d}.jpeg"
    return buf


if __name__ == "__main__":
    main()
