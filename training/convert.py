"""Port the ImageNet EfficientNet-Lite0 weights from PyTorch (.pth) to the Keras graph.

``python -m training convert [--pth FILE] --out training/pretrained/efficientnet_lite0_imagenet.npz``

The output is an ``.npz`` keyed ``<keras layer name>::<weight index>`` so that it can be
loaded into any model that contains the Lite0 layers (backbone alone or the full
classifier), on any Keras backend, without h5 layer-path bookkeeping. Reading the
``.pth`` needs torch; everything else here is numpy only.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from training.lite0 import block_names

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "pretrained" / "efficientnet_lite0_imagenet.npz"

_BN_PARTS = ("weight", "bias", "running_mean", "running_var")


def _torch_to_keras_name(prefix: str) -> str:
    """Map a PyTorch module path (without the parameter suffix) to the Keras layer name."""
    fixed = {"_conv_stem": "stem_conv", "_bn0": "stem_bn", "_conv_head": "top_conv", "_bn1": "top_bn"}
    if prefix in fixed:
        return fixed[prefix]
    m = re.fullmatch(r"_blocks\.(\d+)\.(_\w+)", prefix)
    if not m:
        raise KeyError(prefix)
    block = block_names()[int(m.group(1))]
    suffix = {
        "_expand_conv": "expand_conv",
        "_bn0": "expand_bn",
        "_depthwise_conv": "dwconv",
        "_bn1": "bn",
        "_project_conv": "project_conv",
        "_bn2": "project_bn",
    }[m.group(2)]
    return f"{block}_{suffix}"


def convert_state_dict(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """PyTorch state dict (as numpy arrays) -> {keras layer name: [weights in Keras order]}."""
    out: dict[str, list[np.ndarray]] = {}
    prefixes = []
    for key in state:
        if key.startswith("_fc.") or key.endswith("num_batches_tracked"):
            continue
        prefix = key.rsplit(".", 1)[0]
        if prefix not in prefixes:
            prefixes.append(prefix)
    for prefix in prefixes:
        name = _torch_to_keras_name(prefix)
        if f"{prefix}.running_mean" in state:  # BatchNorm: gamma, beta, mean, var
            out[name] = [np.asarray(state[f"{prefix}.{p}"], np.float32) for p in _BN_PARTS]
            continue
        w = np.asarray(state[f"{prefix}.weight"], np.float32)
        if prefix.endswith("_depthwise_conv"):  # (C, 1, kh, kw) -> (kh, kw, C, 1)
            out[name] = [np.ascontiguousarray(w.transpose(2, 3, 0, 1))]
        else:  # (out, in, kh, kw) -> (kh, kw, in, out)
            out[name] = [np.ascontiguousarray(w.transpose(2, 3, 1, 0))]
    return out


def save_weights(weights: dict[str, list[np.ndarray]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = {f"{name}::{i}": arr for name, arrays in weights.items() for i, arr in enumerate(arrays)}
    np.savez(path, **flat)


def read_weights(path: Path) -> dict[str, list[np.ndarray]]:
    with np.load(path) as data:
        grouped: dict[str, dict[int, np.ndarray]] = {}
        for key in data.files:
            name, idx = key.rsplit("::", 1)
            grouped.setdefault(name, {})[int(idx)] = data[key]
    return {name: [arrs[i] for i in sorted(arrs)] for name, arrs in grouped.items()}


def apply_weights(model, weights: dict[str, list[np.ndarray]]) -> int:
    """Set the ported weights on every matching layer of ``model``; returns layers set.

    Raises if a backbone layer of the model is missing from ``weights``.
    """
    from training.lite0 import backbone_layer_names

    expected = set(backbone_layer_names(model))
    missing = expected - set(weights)
    if missing:
        raise ValueError(f"weights file lacks {len(missing)} backbone layers, e.g. {sorted(missing)[:3]}")
    count = 0
    for name in expected:
        model.get_layer(name).set_weights(weights[name])
        count += 1
    return count


def load_imagenet_weights(model, path: Path | None = None) -> int:
    return apply_weights(model, read_weights(path or DEFAULT_WEIGHTS))


def torch_state_dict_numpy(pth_path: str | None = None) -> dict[str, np.ndarray]:
    import torch

    from training.torch_lite0 import default_pth_path

    state = torch.load(pth_path or default_pth_path(), map_location="cpu", weights_only=True)
    return {k: v.detach().cpu().numpy() for k, v in state.items()}


def main(pth: str | None, out: Path) -> None:
    state = torch_state_dict_numpy(pth)
    weights = convert_state_dict(state)
    save_weights(weights, out)
    n = sum(a.size for arrays in weights.values() for a in arrays)
    print(f"ported {len(weights)} layers ({n:,} values) -> {out}")
