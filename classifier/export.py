"""The exported inference graph: a ``.tflite`` (LiteRT) made from the ``.keras`` model.

The Keras model is the source of truth. Serving classifies through the exported graph (several
times faster on a CPU, see ``bench/bench_inference.py``) and keeps Keras for Grad-CAM. The export
is float32 (an int8 graph would have to lose at most 0.5 point of accuracy; not attempted).
Its file name and sha256 go into the model card's ``export`` entry, which serving checks at load
like the ``.keras`` file's.
"""

from __future__ import annotations

import json
from pathlib import Path

RUNTIME = "LiteRT (ai-edge-litert) with XNNPACK, float32"


def export_litert(*, model_path: Path, out_path: Path | None = None) -> Path:
    """Write ``model_path`` as a ``.tflite`` beside it (or at ``out_path``)."""
    import keras

    out_path = Path(out_path or Path(model_path).with_suffix(".tflite"))
    model = keras.saving.load_model(str(model_path), compile=False)
    model.export(str(out_path), format="litert", verbose=False)
    return out_path


def ensure_export(*, model_path: Path, card_path: Path) -> dict:
    """The card's ``export`` entry, exporting the graph first when the card has none or its
    file is missing. A file whose sha256 differs from the card's is refused."""
    from classifier.inference import sha256_of

    card = json.loads(card_path.read_text())
    entry = card.get("export")
    if entry and (model_path.parent / entry["file"]).exists():
        sha = sha256_of(model_path.parent / entry["file"])
        if sha != entry["sha256"]:
            raise ValueError(f"{entry['file']}: sha256 {sha} does not match its card ({entry['sha256']})")
        return entry
    path = export_litert(model_path=model_path)
    entry = {"file": path.name, "sha256": sha256_of(path), "runtime": RUNTIME, "source_sha256": sha256_of(model_path)}
    card["export"] = entry
    card_path.write_text(json.dumps(card, indent=1) + "\n")
    return entry
