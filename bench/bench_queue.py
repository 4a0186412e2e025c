"""Upload → prediction benchmark through the real path, with real worker processes, ramped to saturation.

    .venv/bin/python bench/bench_queue.py --rates 10 20 40 80 --seconds 30 --workers 2 [--sample-cells 100]

Uses its own SQLite database and embedded SQLite broker under a temporary folder (or the
DATABASE_URL / REDIS_URL in the environment), registers the shipped model, starts K Celery
worker processes (both queues: classification and the Grad-CAM second pass), then for each rate
POSTs one real cell image per upload to the sample upload view for ``--seconds`` (Django test
client in this process, signed in as a technician: view, validation, storage and on-commit
enqueue are the production code), and waits for the queue to drain. Per rate it prints the
upload rate reached, throughput, p50/p95/p99 time from upload to stored prediction and how many
images were lost (accepted, never classified); then the saturation rate: the highest rate whose
throughput kept up (>= 95 % of the upload rate) with p95 <= 2 s. Before the ramp, on idle
workers, one sample of ``--sample-cells`` cells uploaded in one request: time from the request to
"awaiting review" (and to the last heatmap).
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
    parser.add_argument("--rates", type=float, nargs="+", default=[10, 20, 40, 80], help="uploads per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to upload at each rate")
    parser.add_argument("--sample-cells", type=int, default=100, help="cells of the one-request sample (0: skip)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (concurrency 1 each)")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="hv-bench-"))
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{tmp / 'bench.sqlite3'}")
    os.environ["MEDIA_ROOT"] = str(tmp / "media")
    os.environ["HV_BROKER_DIR"] = str(tmp / "broker")
    os.environ.setdefault("HV_CLASSIFY_BATCH_SIZE", "8")
    os.environ.setdefault("HV_INFER_THREADS", "1")  # as run.sh on 2 cores: one thread per worker process
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
    from classifier.services import model_version_register

    call_command("migrate", verbosity=0)
    model_version_register(model_path=default_model_path(), card_path=default_card_path(), activate=True)
    call_command("seed_demo", stdout=io.StringIO())
    tech = User.objects.get(username="tech")
    patient = Patient.objects.create(mrn=f"BENCH-{time.time_ns()}", family_name="Bench", given_name="Mark",
                                     date_of_birth="1980-01-01")
    from django.utils import timezone

    # Declare the queues once before the workers start: two workers creating the same queue row of the
    # embedded SQLite broker at the same moment make one of them exit (UNIQUE constraint on kombu_queue).
    from hematovision.celery import app

    with app.connection_for_write() as conn:
        for queue in app.conf.task_queues:
            queue(conn.default_channel).declare()

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

        if args.sample_cells:  # first, on idle workers: later the ramp's heatmap backlog shares the workers
            _whole_sample(client, patient, args.sample_cells, args.drain_timeout)
        results = []
        for rate in args.rates:
            results.append(_run_rate(client, patient, rate, args.seconds, args.drain_timeout))
        print(f"{'rate/s':>7} {'reached/s':>9} {'accepted':>8} {'classified/s':>12} {'p50 s':>6} {'p95 s':>6} "
              f"{'p99 s':>6} {'lost':>5}")
        for r in results:
            print(f"{r['rate']:7.0f} {r['reached']:9.1f} {r['accepted']:8d} {r['throughput']:12.1f} {r['p50']:6.2f} "
                  f"{r['p95']:6.2f} {r['p99']:6.2f} {r['lost']:5d}")
        kept_up = [r for r in results if r["throughput"] >= 0.95 * r["reached"] and r["p95"] <= 2.0 and not r["lost"]]
        if kept_up:
            best = max(kept_up, key=lambda r: r["reached"])
            print(f"saturation: kept up to {best['reached']:.1f} uploads/s (requested {best['rate']:.0f}/s); "
                  f"highest throughput seen {max(r['throughput'] for r in results):.1f} images/s")
        else:
            print(f"saturation: below {results[0]['rate']:.0f} uploads/s")
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


def _new_sample(patient):
    from django.utils import timezone

    from cases.models import Sample

    return Sample.objects.create(accession_number=f"BENCH-{time.time_ns()}", patient=patient,
                                 collected_at=timezone.now())


def _percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def _run_rate(client, patient, rate: float, seconds: float, drain_timeout: float) -> dict:
    from django.urls import reverse

    from cases.models import CellImage, ImageStatus
    from classifier.models import Prediction

    sample = _new_sample(patient)
    url = reverse("sample-upload", args=[sample.pk])
    n = int(rate * seconds)
    start = time.monotonic()
    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        response = client.post(url, {"images": [_variant(int(rate) * 100_000 + i)]})
        assert response.status_code == 302, response.status_code
    upload_elapsed = time.monotonic() - start
    accepted = CellImage.objects.filter(sample=sample).count()
    deadline = time.monotonic() + drain_timeout
    while CellImage.objects.filter(sample=sample).exclude(status=ImageStatus.CLASSIFIED).exists():
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)
    predictions = list(Prediction.objects.filter(image__sample=sample).select_related("image"))
    latencies = sorted((p.created_at - p.image.uploaded_at).total_seconds() for p in predictions)
    span = (max(p.created_at for p in predictions) - min(p.image.uploaded_at for p in predictions)).total_seconds()
    return {
        "rate": rate,
        "reached": accepted / upload_elapsed,
        "accepted": accepted,
        "throughput": len(predictions) / span if span > 0 else float("nan"),
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p95": _percentile(latencies, 0.95),
        "p99": _percentile(latencies, 0.99),
        "lost": accepted - len(predictions),
    }


def _whole_sample(client, patient, cells: int, timeout: float) -> None:
    from django.urls import reverse

    from cases.models import SampleStatus
    from classifier.models import Prediction

    sample = _new_sample(patient)
    files = [_variant(900_000 + i) for i in range(cells)]
    start = time.monotonic()
    response = client.post(reverse("sample-upload", args=[sample.pk]), {"images": files})
    assert response.status_code == 302, response.status_code
    uploaded = time.monotonic() - start
    reviewed_at = heatmaps_at = None
    while time.monotonic() - start < timeout and heatmaps_at is None:
        sample.refresh_from_db()
        if reviewed_at is None and sample.status == SampleStatus.AWAITING_REVIEW:
            reviewed_at = time.monotonic() - start
        if reviewed_at is not None and not Prediction.objects.filter(image__sample=sample, heatmap="").exists():
            heatmaps_at = time.monotonic() - start
        time.sleep(0.1)
    print(f"one sample of {cells} cells: upload request {uploaded:.1f}s, "
          f"upload -> awaiting review {reviewed_at if reviewed_at is not None else float('nan'):.1f}s, "
          f"-> every heatmap stored {heatmaps_at if heatmaps_at is not None else float('nan'):.1f}s")


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
