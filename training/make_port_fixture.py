"""Regenerate tests/training/data/lite0_reference.npz (needs torch):

``python -m training.make_port_fixture``

Stores two real cell images (as the uint8 model input) and the pooled 1280-d features the
PyTorch EfficientNet-Lite0 gives for them, so the Keras port can be checked without torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from classifier.preprocessing import load_and_prepare

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "training" / "data" / "lite0_reference.npz"
IMAGES = ("tests/fixtures/cells/EOSINOPHIL/_0_5239.jpeg", "tests/fixtures/cells/NEUTROPHIL/_0_1966.jpeg")


def main() -> None:
    import torch

    from training.torch_lite0 import load_torch_lite0, torch_normalize

    images = np.stack([load_and_prepare(REPO / p) for p in IMAGES])
    model = load_torch_lite0()
    with torch.no_grad():
        feats = model.features(torch_normalize(images)).numpy()
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(FIXTURE, images=images, features=feats.astype(np.float32), sources=np.array(IMAGES))
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
