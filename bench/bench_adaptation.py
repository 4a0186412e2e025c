"""Adaptation curve: how well a model fitted to a new lab from N confirmed cells per class does
on that lab's held-out cells, and how long one in-app candidate takes on this machine.

    .venv/bin/python bench/bench_adaptation.py [--quick] [--seeds 3] [--ns 10 25 50 100] [--timing-only]

Simulated new labs (the caches of ``python -m training cells``, built here when missing):

* a base trained on BCCD alone, adapted with N confirmed PBC cells per class (five classes and
  OTHER) drawn from PBC's train/val split only, scored on the PBC test split (1,000 white cells,
  five classes);
* the other way round: a base trained on PBC alone (every other cell of its train split),
  adapted with N BCCD TRAIN cells per class (four classes: BCCD has no basophils or OTHER),
  scored on every other BCCD TEST file (1,244 of 2,487, all 71 originals) and on TEST_SIMPLE
  (71). BCCD TRAIN files are augmented copies of few originals (16 monocyte
  originals): N files are N augmented copies, from at most that many originals.

The bases: EfficientNet-Lite0 with its ImageNet weights frozen up to ``block6d_add`` and the top
(``block7a``, the head convolution, the classifier) trained for ``--base-epochs`` on one lab
(BCCD: six copies of each training original) with
``training.adapt.train_candidate`` itself (from a fresh head, no replay, the lab's validation
split held out). Not the full ``train-cells`` recipe (backbone fine-tuned from ``block2a``, ~45 min
per run on 2 cores): a base whose lower layers never saw a blood cell. Each candidate is what
the app would train: ``split_by_sample`` holds out 20 % of the N cells (calibration, comparison),
``train_candidate`` fits on the rest mixed with the base's replay set (50 base-training cells per
class). Balanced accuracy: mean recall over the test set's classes, the suggestion being the
most probable of the five cell classes, as served; N=0 is the base itself (for the BCCD base
also over the four classes it knows, as the v3 card's lab table does).

Every test and pool cell goes once through the frozen part; the activations are cached under
``runs/adapt`` (they do not depend on the base, whose frozen part is ImageNet's).

Timing: one candidate from 500 confirmed cells (100 per class, PBC files decoded and prepared
as in the app, 10 samples of 50) from the served wbc-lite0-v3 with its replay set, no cache, as
the Celery task would run it; prints the wall time and the CPU load of other processes meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
WORK = REPO / "runs" / "adapt"
CACHES = REPO / "runs" / "cells"
SHARED = REPO.parent / "shared" / "data"


def _cpu_busy_s() -> float:
    """Seconds of busy CPU (all cores, all processes) since boot, from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(v) for v in fields]
    idle = ticks[3] + ticks[4]
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


class ActivationStore(dict):
    """The benchmark's activation cache, saved as one .npz (names, view counts, activations)."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        if path.exists():
            with np.load(path) as z:
                names, counts, acts = z["names"], z["counts"], z["acts"]
            ends = np.cumsum(counts)
            for name, end, n in zip(names, ends, counts, strict=True):
                self[str(name)] = acts[end - n : end]

    def save(self) -> None:
        names = list(self)
        np.savez(
            self.path,
            names=np.array(names),
            counts=np.array([len(self[n]) for n in names]),
            acts=np.concatenate([self[n] for n in names]),
        )


def _ensure_caches() -> None:
    if not all((CACHES / f).exists() for f in ("bccd_train.npz", "bccd_test.npz", "pbc_trainval.npz", "pbc_test.npz")):
        from training.labs import build_all_caches

        build_all_caches(SHARED, CACHES)


def _init_model() -> tuple[Path, dict]:
    """ImageNet Lite0 with a fresh six-output head: the starting point of both bases."""
    from classifier.preprocessing import CELL_CROP, CELL_INPUT_SHAPE
    from training.labs import LABELS
    from training.model import build_classifier

    path = WORK / "imagenet_init.keras"
    if not path.exists():
        import keras

        keras.utils.set_random_seed(0)
        build_classifier(weights="imagenet", classes=LABELS, input_shape=CELL_INPUT_SHAPE).save(path)
    card = {"name": "imagenet-lite0", "classes": list(LABELS), "input_method": CELL_CROP, "calibration": {}}
    return path, card


def _base(name: str, train, holdout, store, epochs: int) -> tuple[Path, dict]:
    from training.adapt import AdaptConfig, train_candidate

    path = WORK / f"{name}.keras"
    if path.exists():
        return path, json.loads(path.with_suffix(".json").read_text())
    init, card = _init_model()
    t = time.monotonic()
    result = train_candidate(
        base_model=init,
        base_card=card,
        train_cells=train,
        holdout_cells=holdout,
        name=name,
        out_dir=WORK,
        config=AdaptConfig(views=0, epochs=epochs, replay_weight=0.0),
        cache=store,
        progress=_printer(name),
    )
    store.save()
    print(f"{name}: {len(train)} cells, {time.monotonic() - t:.0f} s, held-out BA "
          f"{result.comparison.candidate.balanced_accuracy:.3f}", flush=True)
    return result.model_path, result.card


def _thin(cells, per_group: int):
    """At most ``per_group`` cells of each group (BCCD: six of the twelve copies of an original
    keep the base's pass through the frozen part short)."""
    seen: dict[str, int] = {}
    out = []
    for c in cells:
        seen[c.group] = seen.get(c.group, 0) + 1
        if seen[c.group] <= per_group:
            out.append(c)
    return out


def _printer(tag: str):
    def show(p):
        if p.stage == "training":
            print(f"  [{tag}] epoch {p.epoch}/{p.epochs} loss {p.loss:.3f} ({p.elapsed_s:.0f} s)", flush=True)

    return show


def _ba(logits: np.ndarray, labels: np.ndarray, classes: list[str], n_cell: int) -> float:
    """Balanced accuracy over the cells of the first ``n_cell`` classes (OTHER cells, and with
    ``n_cell=4`` basophils, left out), suggestion = argmax over those classes."""
    pred = logits[:, :n_cell].argmax(axis=1)
    return float(np.mean([(pred[labels == k] == k).mean() for k in np.unique(labels) if k < n_cell]))


def _draw(pool, n: int, seed: int, classes: list[str]):
    rng = np.random.default_rng(seed)
    out = []
    for c in classes:
        mine = [x for x in pool if x.label == c]
        out += [mine[i] for i in rng.permutation(len(mine))[:n]]
    return out


def run_direction(tag, base_path, base_card, replay, pool, classes, tests, ns, seeds, store, cfg):
    from training.adapt import cell_logits, split_by_sample, train_candidate
    from training.labs import LABELS

    rows = []
    for test_name, cells in tests.items():
        y = np.array([LABELS.index(c.label) for c in cells])
        lg = cell_logits(model=base_path, card=base_card, cells=cells, cache=store)
        rows.append({"direction": tag, "test": test_name, "n": 0, "seed": None, "ba": _ba(lg, y, LABELS, 5),
                     "ba_four": _ba(lg, y, LABELS, 4)})
        print(f"{tag} N=0 {test_name}: BA {rows[-1]['ba']:.3f} (four-way {rows[-1]['ba_four']:.3f})", flush=True)
        (WORK / "partial_rows.jsonl").open("a").write(json.dumps(rows[-1]) + "\n")
    store.save()
    for seed in range(seeds):
        for n in ns:  # the draws of one seed are nested: N=10 is part of N=25, ...
            drawn = _draw(pool, n, seed, classes)
            fit, held = split_by_sample(drawn, holdout_fraction=0.2, seed=seed)
            t = time.monotonic()
            res = train_candidate(
                base_model=base_path, base_card=base_card, train_cells=fit, holdout_cells=held, replay=replay,
                seed=seed, config=cfg, cache=store,
            )
            took = time.monotonic() - t
            for test_name, cells in tests.items():
                y = np.array([LABELS.index(c.label) for c in cells])
                lg = cell_logits(model=res.model, card=base_card, cells=cells, cache=store)
                rows.append({"direction": tag, "test": test_name, "n": n, "seed": seed, "ba": _ba(lg, y, LABELS, 5),
                             "train_cells": len(fit), "holdout_cells": len(held), "wall_s": took})
                print(f"{tag} N={n} seed {seed} {test_name}: BA {rows[-1]['ba']:.3f} "
                      f"({len(fit)} fitted, {len(held)} held out, {took:.0f} s)", flush=True)
            (WORK / "partial_rows.jsonl").open("a").write("".join(json.dumps(r) + "\n" for r in rows[-len(tests):]))
            store.save()
    return rows


def curve(rows: list[dict], out_png: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["| adapted to | test set | " + " | ".join(f"N={n}" for n in sorted({r['n'] for r in rows})) + " |"]
    lines.append("|---|---|" + "---|" * len({r["n"] for r in rows}))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (direction, test) in sorted({(r["direction"], r["test"]) for r in rows}):
        mine = [r for r in rows if r["direction"] == direction and r["test"] == test]
        ns = sorted({r["n"] for r in mine})
        mean = [np.mean([r["ba"] for r in mine if r["n"] == n]) for n in ns]
        sd = [np.std([r["ba"] for r in mine if r["n"] == n]) for n in ns]
        cells = []
        for n in sorted({r["n"] for r in rows}):
            if n not in ns:
                cells.append("not run")
                continue
            m, s, k = mean[ns.index(n)], sd[ns.index(n)], len([r for r in mine if r["n"] == n])
            cells.append(f"{m:.3f}" if n == 0 else f"{m:.3f} ± {s:.3f} ({k} seeds)" if k > 1 else f"{m:.3f} (1 seed)")
        lines.append(f"| {direction} | {test} | " + " | ".join(cells) + " |")
        ax.errorbar(ns, mean, yerr=sd, marker="o", capsize=3, label=f"{direction}: {test}")
    ax.axhline(0.9, color="grey", linestyle=":", linewidth=1, label="target 0.90 at N=50")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xticks(sorted({r["n"] for r in rows}))
    ax.set_xticklabels([str(n) for n in sorted({r["n"] for r in rows})])
    ax.set_xlabel("confirmed cells per class from the new lab (0: base model)")
    ax.set_ylabel("balanced accuracy, new lab's held-out cells")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return "\n".join(lines)


def timing(n_per_class: int = 100) -> dict:
    """One in-app candidate from 500 PBC files with the served model and its replay set."""
    from training.adapt import LabeledCell, Replay, build_replay_from_caches, split_by_sample, train_candidate
    from training.labs import FIVE, PBC_FOLDERS, pbc_items

    model = REPO / "classifier" / "models" / "wbc-lite0-v3.keras"
    card = json.loads(model.with_suffix(".json").read_text())
    replay_path = model.with_suffix(".replay.npz")
    if not replay_path.exists():
        replay_path = WORK / "wbc-lite0-v3.replay.npz"
        if not replay_path.exists():
            build_replay_from_caches(model_path=model, card_path=model.with_suffix(".json"),
                                     caches=[CACHES / "bccd_train.npz", CACHES / "pbc_trainval.npz"], out=replay_path)
    replay = Replay.load(replay_path)
    items = [i for i in pbc_items(SHARED / "pbc") if i.split != "test"]
    rng = np.random.default_rng(0)
    cells = []
    for c in FIVE:
        mine = [i for i in items if PBC_FOLDERS[i.kind] == c]
        cells += [mine[k] for k in rng.permutation(len(mine))[:n_per_class]]
    order = rng.permutation(len(cells))
    labeled = [LabeledCell(cells[k].path, FIVE[cells[k].label], f"sample{j // 50}", cells[k].name)
               for j, k in enumerate(order)]
    fit, held = split_by_sample(labeled, holdout_fraction=0.2, seed=0)
    epochs_seen = []
    load0, busy0, own0, t0 = os.getloadavg()[0], _cpu_busy_s(), _own_cpu_s(), time.monotonic()
    result = train_candidate(
        base_model=model, base_card=card, train_cells=fit, holdout_cells=held, replay=replay,
        name="timing-candidate", out_dir=WORK / "timing", time_budget_s=15 * 60,
        progress=lambda p: epochs_seen.append(p) if p.stage == "training" else None,
    )
    wall = time.monotonic() - t0
    busy, own = _cpu_busy_s() - busy0, _own_cpu_s() - own0
    c = result.comparison
    return {
        "cells": len(labeled), "fitted": len(fit), "held_out": len(held), "replay_cells": int(len(replay.labels)),
        "wall_s": wall, "epochs": len(result.history), "progress_reports": len(epochs_seen),
        "stopped_by_time_budget": result.card["adaptation"]["stopped_by_time_budget"],
        "own_cores_busy": own / wall, "other_cores_busy": max(busy - own, 0.0) / wall,
        "loadavg_1min_start": load0, "loadavg_1min_end": os.getloadavg()[0], "cpus": os.cpu_count(),
        "holdout_ba_active": c.active.balanced_accuracy, "holdout_ba_candidate": c.candidate.balanced_accuracy,
        "replay_file_bytes": replay_path.stat().st_size,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N in {10, 50}, one seed, short bases: a smoke run")
    parser.add_argument("--ns", type=int, nargs="+", default=[10, 25, 50, 100])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="candidate epochs (default: AdaptConfig's)")
    parser.add_argument("--views", type=int, default=None, help="augmented views per cell (default: AdaptConfig's)")
    parser.add_argument("--train-from", default=None, help="first fitted layer (default block7a; 'logits': head)")
    parser.add_argument("--base-epochs", type=int, default=8)
    parser.add_argument("--directions", nargs="+", default=["bccd->pbc", "pbc->bccd"])
    parser.add_argument("--tune", action="store_true",
                        help="choose the recipe without the test split: BCCD base adapted with PBC train cells, "
                        "scored on PBC val (writes runs/adapt/tune_*.json, no PNG)")
    parser.add_argument("--store", default=str(WORK / "activations_imagenet.npz"),
                        help="activation cache of the frozen ImageNet part (one per concurrent run)")
    parser.add_argument("--table-from", help="only draw the table and curve from rows saved by earlier runs "
                        "(runs/adapt/partial_rows.jsonl)")
    parser.add_argument("--timing-only", action="store_true")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--png", default=str(REPO / "docs" / "adaptation_curve.png"))
    args = parser.parse_args()
    if args.quick:
        args.ns, args.seeds = [10, 50], 1

    from training.adapt import AdaptConfig, build_replay, cells_from_caches
    from training.labs import FIVE, LABELS

    WORK.mkdir(parents=True, exist_ok=True)
    if args.table_from:
        rows = [json.loads(line) for line in Path(args.table_from).read_text().splitlines() if line.strip()]
        print(curve(rows, Path(args.png)))
        return 0
    _ensure_caches()
    results: dict = {"args": vars(args)}
    if not args.no_timing:  # first: the measurement that must not wait for the curve
        t = timing()
        results["timing"] = t
        print("\nOne candidate from 500 confirmed cells (wbc-lite0-v3, replay, 2-core CPU):")
        print(json.dumps(t, indent=1), flush=True)
    if not args.timing_only:
        cfg = AdaptConfig()
        for k in ("epochs", "views", "train_from"):
            if getattr(args, k) is not None:
                setattr(cfg, k, getattr(args, k))
        results["config"] = cfg.__dict__
        store = ActivationStore(Path(args.store))
        bccd_train = cells_from_caches([CACHES / "bccd_train.npz"], splits=["train", "val"])
        pbc = cells_from_caches([CACHES / "pbc_trainval.npz"], splits=["train", "val"])
        bccd_test = cells_from_caches([CACHES / "bccd_test.npz"], splits=["TEST", "TEST_SIMPLE"])
        pbc_test = cells_from_caches([CACHES / "pbc_test.npz"], splits=["test"])
        split_of = {}
        for path in (CACHES / "bccd_train.npz", CACHES / "pbc_trainval.npz", CACHES / "bccd_test.npz"):
            with np.load(path) as z:
                split_of.update(zip(z["names"].tolist(), z["splits"].tolist(), strict=True))
        rows = []
        tag = "base"
        if "bccd->pbc" in args.directions:
            tr = _thin([c for c in bccd_train if split_of[c.name] == "train"], per_group=6)
            va = _thin([c for c in bccd_train if split_of[c.name] == "val"], per_group=6)
            base, card = _base(f"{tag}_bccd", tr, va, store, args.base_epochs)
            replay = build_replay(model=base, card=card, cells=tr, per_class=50, cache=store)
            pool, tests = pbc, {"PBC test": pbc_test}
            if args.tune:
                pool = [c for c in pbc if split_of[c.name] == "train"]
                tests = {"PBC val": [c for c in pbc if split_of[c.name] == "val" and c.label != "OTHER"]}
            rows += run_direction("BCCD base -> PBC", base, card, replay, pool, list(LABELS), tests, args.ns,
                                  args.seeds, store, cfg)
        if "pbc->bccd" in args.directions:
            tr = [c for c in pbc if split_of[c.name] == "train"][::2]
            va = [c for c in pbc if split_of[c.name] == "val"]
            base, card = _base(f"{tag}_pbc", tr, va, store, args.base_epochs)
            replay = build_replay(model=base, card=card, cells=tr, per_class=50, cache=store)
            # every other TEST file (1,244 of 2,487, all 71 originals): the CPU is shared
            tests = {s: [c for c in bccd_test if split_of[c.name] == s] for s in ("TEST", "TEST_SIMPLE")}
            tests["TEST"] = tests["TEST"][::2]
            rows += run_direction(
                "PBC base -> BCCD", base, card, replay, bccd_train, list(FIVE[:4]),
                {f"BCCD {k}": v for k, v in tests.items()}, args.ns, args.seeds, store, cfg,
            )
        results["rows"] = rows
        table = curve(rows, WORK / "tune.png" if args.tune else Path(args.png))
        print("\nBalanced accuracy (mean ± sd over seeds) against confirmed cells per class:\n")
        print(table)
        results["table"] = table
    name = "bench_quick.json" if args.quick else "bench_results.json"
    if args.tune:
        name = f"tune_{cfg.train_from}_v{cfg.views}_e{cfg.epochs}_n{'-'.join(map(str, args.ns))}.json"
    (WORK / name).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
