"""Time the field detector on one core, against a baseline measured in the same run.

    .venv/bin/python bench/bench_detection.py [--fields 50] [--data ../shared/data/bccd/BCCD] [--card]

Pins the process to one CPU (``os.sched_setaffinity``) and one thread for numpy/BLAS and
TensorFlow before they load, decodes each BCCD field from its JPEG bytes, then times:

* ``detect``: :func:`classifier.detection.detect_field` (decode included), the issue's target
  being <= 200 ms for a 640x480 field on one core;
* ``detect+crops``: the same plus :func:`classifier.detection.crop_cell` for every white cell;
* ``baseline``: JPEG decode of the field + the cell classifier's ``prepare()`` (cell-crop-224)
  of one 320x240 crop, the work the single-cell path already does per image.

Prints median and p95 (ms) of each and the detector's ratio to the baseline, and the peak
resident memory of the process. ``--card`` also writes them into the ``benchmark`` section of
``classifier/models/wbc-detector-v1.json`` (``training.evaluate_fields`` keeps that section and
reads its p95 for the timing target).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classifier.detection import DETECTOR_NAME, crop_cell, detect_field  # noqa: E402
from classifier.preprocessing import CELL_CROP, load_image, prepare  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "bccd" / "BCCD"
CARD = ROOT / "classifier" / "models" / f"{DETECTOR_NAME}.json"


def _timed(fn, data: list[bytes], repeats: int) -> np.ndarray:
    out = []
    for _ in range(repeats):
        for blob in data:
            t = time.perf_counter()
            fn(blob)
            out.append((time.perf_counter() - t) * 1000.0)
    return np.array(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fields", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--card", action="store_true", help=f"write the figures into {CARD.name}'s benchmark section")
    ap.add_argument("--note", default="", help="with --card: the machine and its load, for the record")
    args = ap.parse_args(argv)

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    paths = sorted((args.data / "JPEGImages").glob("*.jpg"))[: args.fields]
    data = [p.read_bytes() for p in paths]

    def baseline(blob: bytes) -> None:
        field = load_image(blob)
        prepare(field.reduce(2), method=CELL_CROP)

    def detect(blob: bytes) -> None:
        detect_field(blob)

    def detect_and_crop(blob: bytes) -> None:
        field = load_image(blob)
        for cell in detect_field(field).white_cells:
            crop_cell(field, cell.box)

    for fn in (baseline, detect):  # warm-up: imports, allocator, caches
        fn(data[0])
    sizes = {Image.open(io.BytesIO(b)).size for b in data}
    figures = {
        "baseline": _timed(baseline, data, args.repeats),
        "detect": _timed(detect, data, args.repeats),
        "detect+crops": _timed(detect_and_crop, data, args.repeats),
    }
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"{len(data)} fields {sorted(sizes)}, {args.repeats} passes, CPUs {cpus}")
    base = np.median(figures["baseline"])
    for name, ms in figures.items():
        print(
            f"{name:13s} median {np.median(ms):7.1f} ms  p95 {np.percentile(ms, 95):7.1f} ms  "
            f"x{np.median(ms) / base:5.2f} baseline"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"peak resident memory {peak:.0f} MiB (whole process, Python + numpy + scipy + Pillow)")
    if args.card:
        card = json.loads(CARD.read_text())
        card["benchmark"] = {
            "cpu": f"1 core pinned (sched_setaffinity), 1 thread; load average {os.getloadavg()[0]:.1f} at the end"
            + (f"; {args.note}" if args.note else ""),
            "fields": len(data),
            "passes": args.repeats,
            **{f"{key}_{stat}_ms": round(float(fn(figures[name])), 1)
               for name, key in (("detect", "detect"), ("detect+crops", "detect_and_crops"), ("baseline", "baseline"))
               for stat, fn in (("median", np.median), ("p95", lambda ms: np.percentile(ms, 95)))},
            "baseline": "JPEG decode + prepare(cell-crop-224) of the halved field",
            "detect_over_baseline": round(float(np.median(figures["detect"]) / base), 2),
            "peak_rss_mib": round(peak),
        }
        timing = card.get("targets", {}).get("detect_640x480<=200ms_one_core")
        if timing is not None:
            timing.update(value=card["benchmark"]["detect_p95_ms"], met=card["benchmark"]["detect_p95_ms"] <= 200)
        CARD.write_text(json.dumps(card, indent=1) + "\n")
        print(f"wrote the benchmark section of {CARD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
