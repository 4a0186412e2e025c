"""CPU inference benchmark of the shipped classifier (``classifier.inference``).

    .venv/bin/python bench/bench_inference.py [--repeats 5] [--batch-sizes 1 32]

Uses the real cells in tests/fixtures/cells (320x240 JPEG, PIL images already decoded,
as the Celery task hands them over). For each batch size, with and without Grad-CAM,
prints the median latency per call, latency per image and throughput (images/s).
The first call of each configuration is a warm-up and is not timed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()

    from PIL import Image

    from classifier.inference import load_classifier

    cells = sorted((REPO / "tests" / "fixtures" / "cells").glob("*/*.jpeg"))
    pool = [Image.open(p).convert("RGB") for p in cells]
    t0 = time.perf_counter()
    clf = load_classifier()
    load_s = time.perf_counter() - t0
    import keras

    print(
        f"model {clf.version_name} ({clf.sha256[:12]}), backend {keras.backend.backend()}, "
        f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), load {load_s:.2f}s"
    )
    print(f"{'batch':>5} {'grad-cam':>8} {'ms/call':>9} {'ms/image':>9} {'images/s':>9}")
    for bs in args.batch_sizes:
        batch = [pool[i % len(pool)] for i in range(bs)]
        for heat in (False, True):
            clf.predict(images=batch, with_heatmap=heat)  # warm-up (graph tracing)
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                clf.predict(images=batch, with_heatmap=heat)
                times.append(time.perf_counter() - t)
            med = statistics.median(times)
            print(f"{bs:>5} {('yes' if heat else 'no'):>8} {med * 1000:9.1f} {med * 1000 / bs:9.1f} {bs / med:9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
