"""CPU inference benchmark of the shipped classifier: the exported graph (LiteRT) against Keras,
in one run, on the same machine and images.

    .venv/bin/python bench/bench_inference.py [--repeats 7] [--batch-sizes 1 32] [--threads N]

Images: the committed real cells of both labs (tests/fixtures/cells and tests/fixtures/pbc),
decoded PIL images as the Celery task hands them over; preprocessing (the cell crop) is inside
every timed call, as it is in serving. For each batch size:

* classify: ``predict(with_heatmap=False)`` through LiteRT and through Keras;
* with Grad-CAM: what a cell costs in all. Exported: LiteRT classification, then the heatmap
  pass (``heatmaps``, Keras forward + backward). Keras: one ``predict(with_heatmap=True)``.

* model only: the same prepared batch through the exported graph and through Keras (the part of
  a call that the export changes; the cell crop, ~6 ms an image, is the same code in both).

Prints the median per call, per image, images/s, and the ratio exported / Keras. The first call
of each configuration is a warm-up and is not timed.
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


def _median_s(fn, repeats: int) -> float:
    fn()  # warm-up: graph tracing, tensor allocation
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _configurations(exported, keras_clf, batch):
    """(name, exported call, Keras call) for one batch."""
    labels = [p.label for p in exported.predict(images=batch)]
    _, _, x = exported.prepare_batch(batch)
    return [
        ("model only", lambda: exported.logits(x), lambda: keras_clf.logits(x)),
        ("no", lambda: exported.predict(images=batch), lambda: keras_clf.predict(images=batch)),
        (
            "yes",
            lambda: (exported.predict(images=batch), exported.heatmaps(images=batch, labels=labels)),
            lambda: keras_clf.predict(images=batch, with_heatmap=True),
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--threads", type=int, default=None, help="default: HV_INFER_THREADS or every core")
    args = parser.parse_args()

    from PIL import Image

    from classifier.inference import Classifier, default_card_path, default_model_path, inference_threads

    fixtures = REPO / "tests" / "fixtures"
    cells = sorted(fixtures.glob("cells/*/*.jpeg")) + sorted(fixtures.glob("pbc/*/*.jpg"))
    pool = [Image.open(p).convert("RGB") for p in cells]
    threads = args.threads or inference_threads()
    t0 = time.perf_counter()
    exported = Classifier(default_model_path(), default_card_path(), runtime="litert", threads=threads)
    load_lite = time.perf_counter() - t0
    t0 = time.perf_counter()
    keras_clf = Classifier(default_model_path(), default_card_path(), runtime="keras", threads=threads)
    load_keras = time.perf_counter() - t0
    import keras

    print(
        f"model {exported.version_name} ({exported.sha256[:12]}), {exported.card['export']['runtime']} vs Keras "
        f"{keras.__version__} on {keras.backend.backend()}; {os.cpu_count()} CPU cores "
        f"({platform.processor() or platform.machine()}), {threads} inference thread(s); "
        f"load: exported {load_lite:.2f}s, Keras {load_keras:.2f}s"
    )
    print(f"{'batch':>5} {'grad-cam':>10} | {'exported ms/img':>15} {'img/s':>7} | {'Keras ms/img':>12} {'img/s':>7} |")
    for bs in args.batch_sizes:
        for name, (fast, slow) in _configurations(exported, keras_clf, [pool[i % len(pool)] for i in range(bs)]):
            a, b = _median_s(fast, args.repeats), _median_s(slow, args.repeats)
            print(
                f"{bs:>5} {name:>10} | {a * 1000 / bs:15.1f} {bs / a:7.1f} | {b * 1000 / bs:12.1f} {bs / b:7.1f} | "
                f"{b / a:4.2f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
