"""Classifier graph (served model) and the augmenting training wrapper."""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
from keras import layers

from classifier.preprocessing import CLASSES, INPUT_SHAPE
from training import lite0
from training.convert import DEFAULT_WEIGHTS, load_imagenet_weights

ARCHITECTURES = ("efficientnet_lite0",)


def build_classifier(
    arch: str = "efficientnet_lite0",
    weights: str = "imagenet",
    dropout: float = 0.3,
    imagenet_weights_path: Path | None = None,
    *,
    classes: tuple[str, ...] = CLASSES,
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
) -> keras.Model:
    """Served model: float32 RGB in [0, 255] of ``input_shape`` -> one logit per class.

    The backbone normalisation is inside the graph, so serving only has to feed the
    output of ``classifier.preprocessing.prepare_image``.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; choose from {ARCHITECTURES}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = lite0.normalize(inputs)
    x = lite0.lite0_features(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(len(classes), name="logits")(x)
    model = keras.Model(inputs, outputs, name=arch)
    if weights == "imagenet":
        load_imagenet_weights(model, imagenet_weights_path or DEFAULT_WEIGHTS)
    elif weights != "none":
        raise ValueError("weights must be 'imagenet' or 'none'")
    return model


class RandomAffineCell(layers.Layer):
    """Random flips, any rotation, zoom and shift as ONE bilinear affine warp per image
    (reflect fill). One warp instead of four stacked Keras layers: same augmentations,
    several times faster, and only one interpolation blur. Training only."""

    def __init__(self, zoom=(0.9, 1.15), shift=0.05, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.zoom, self.shift, self.seed = tuple(zoom), float(shift), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        ops = keras.ops
        n = ops.shape(images)[0]
        h, w = images.shape[1], images.shape[2]
        u = keras.random.uniform((n, 6), seed=self.seed_generator)
        theta = u[:, 0] * (2.0 * math.pi)
        scale = self.zoom[0] + u[:, 1] * (self.zoom[1] - self.zoom[0])
        fx = ops.where(u[:, 2] < 0.5, -1.0, 1.0)
        fy = ops.where(u[:, 3] < 0.5, -1.0, 1.0)
        tx = (u[:, 4] * 2.0 - 1.0) * self.shift * w
        ty = (u[:, 5] * 2.0 - 1.0) * self.shift * h
        cos, sin = ops.cos(theta) / scale, ops.sin(theta) / scale
        # output pixel -> input pixel: R(theta) diag(fx, fy) / scale about the centre, then shift
        m00, m01, m10, m11 = cos * fx, -sin * fy, sin * fx, cos * fy
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        a2 = cx - m00 * cx - m01 * cy - tx
        b2 = cy - m10 * cx - m11 * cy - ty
        zeros = ops.zeros_like(theta)
        transform = ops.stack([m00, m01, a2, m10, m11, b2, zeros, zeros], axis=1)
        if keras.backend.backend() == "torch":
            return _torch_warp(images, transform)
        return ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="reflect")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "zoom": self.zoom, "shift": self.shift, "seed": self.seed}


def _torch_warp(images, transform):
    """Same warp as ``keras.ops.image.affine_transform`` (bilinear, reflect) through
    ``grid_sample``; Keras' torch implementation of that op is ~30x slower."""
    import torch
    from torch.nn import functional as F

    n, h, w, _ = images.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=images.device, dtype=images.dtype),
        torch.arange(w, device=images.device, dtype=images.dtype),
        indexing="ij",
    )
    t = transform[:, :, None, None]
    x_in = t[:, 0] * xs + t[:, 1] * ys + t[:, 2]
    y_in = t[:, 3] * xs + t[:, 4] * ys + t[:, 5]
    grid = torch.stack([x_in / (w - 1) * 2.0 - 1.0, y_in / (h - 1) * 2.0 - 1.0], dim=-1)
    out = F.grid_sample(
        images.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode="reflection", align_corners=True
    )
    return out.permute(0, 2, 3, 1)


class StainJitter(layers.Layer):
    """Colour/stain jitter on [0, 255] RGB, all element-wise: brightness, contrast,
    per-channel gain (stain hue/intensity drift) and saturation. Training only."""

    def __init__(self, brightness=0.08, contrast=0.2, channel_gain=0.05, saturation=0.25, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.brightness, self.contrast = float(brightness), float(contrast)
        self.channel_gain, self.saturation, self.seed = float(channel_gain), float(saturation), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        ops = keras.ops
        n = ops.shape(images)[0]
        u = keras.random.uniform((n, 6), minval=-1.0, maxval=1.0, seed=self.seed_generator)
        x = images
        gain = 1.0 + self.channel_gain * u[:, 0:3]
        x = x * ops.reshape(gain, (n, 1, 1, 3))
        gray = ops.mean(x, axis=-1, keepdims=True)
        sat = ops.reshape(1.0 + self.saturation * u[:, 3], (n, 1, 1, 1))
        x = gray + (x - gray) * sat
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        con = ops.reshape(1.0 + self.contrast * u[:, 4], (n, 1, 1, 1))
        x = mean + (x - mean) * con
        x = x + ops.reshape(self.brightness * 255.0 * u[:, 5], (n, 1, 1, 1))
        return ops.clip(x, 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "brightness": self.brightness,
            "contrast": self.contrast,
            "channel_gain": self.channel_gain,
            "saturation": self.saturation,
            "seed": self.seed,
        }


class StainShift(layers.Layer):
    """Strong stain / camera / focus augmentation for labs never seen, on [0, 255] RGB,
    training only. Per image: a colour cast (per-channel gain up to +-``cast``), a hue rotation
    (up to +-``hue`` degrees, about the grey axis), saturation, contrast, brightness and gamma;
    with probability ``p_gray`` grayscale; with probability ``p_blur`` a defocus blur of random
    strength; with probability ``p_noise`` sensor noise. Everything is an element-wise op or
    one depthwise convolution, so it runs on any Keras backend and on the GPU."""

    def __init__(
        self,
        cast=0.18,
        hue=25.0,
        saturation=0.45,
        contrast=0.3,
        brightness=0.1,
        gamma=0.35,
        p_gray=0.1,
        p_blur=0.4,
        p_noise=0.3,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.cfg = {
            "cast": float(cast),
            "hue": float(hue),
            "saturation": float(saturation),
            "contrast": float(contrast),
            "brightness": float(brightness),
            "gamma": float(gamma),
            "p_gray": float(p_gray),
            "p_blur": float(p_blur),
            "p_noise": float(p_noise),
        }
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        k = np.exp(-0.5 * (np.arange(-3, 4) / 1.6) ** 2)
        k2 = np.outer(k, k) / np.outer(k, k).sum()
        self._kernel = np.repeat(k2[:, :, None, None], 3, axis=2).astype("float32")  # (7, 7, 3, 1)

    def call(self, images, training=None):
        if not training:
            return images
        ops, c = keras.ops, self.cfg
        n = ops.shape(images)[0]
        u = keras.random.uniform((n, 13), minval=-1.0, maxval=1.0, seed=self.seed_generator)

        def per_image(v):
            return ops.reshape(v, (n, 1, 1, 1))

        x = images / 255.0
        # gamma, then colour cast (the illuminant / camera white balance / stain intensity)
        x = ops.power(ops.maximum(x, 1e-4), per_image(ops.exp(c["gamma"] * u[:, 0])))
        x = x * ops.reshape(1.0 + c["cast"] * u[:, 1:4], (n, 1, 1, 3))
        # hue rotation about the grey axis (Rodrigues' formula on the unit diagonal)
        theta = u[:, 4] * (c["hue"] * math.pi / 180.0)
        cos, sin = ops.cos(theta), ops.sin(theta)
        a = (1.0 - cos) / 3.0
        b = sin / math.sqrt(3.0)
        d = cos + a
        rot = ops.stack([d, a - b, a + b, a + b, d, a - b, a - b, a + b, d], axis=1)
        x = ops.einsum("nhwc,ndc->nhwd", x, ops.reshape(rot, (n, 3, 3)))
        gray = ops.mean(x, axis=-1, keepdims=True)
        sat = 1.0 + c["saturation"] * u[:, 5]
        sat = ops.where(u[:, 6] < 2.0 * c["p_gray"] - 1.0, 0.0, sat)
        x = gray + (x - gray) * per_image(sat)
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        x = mean + (x - mean) * per_image(1.0 + c["contrast"] * u[:, 7])
        x = x + per_image(c["brightness"] * u[:, 8])
        # defocus: a mix of the image and its Gaussian blur, applied twice for strong blur
        blur_w = ops.where(u[:, 9] < 2.0 * c["p_blur"] - 1.0, (u[:, 10] + 1.0) / 2.0, 0.0)
        kernel = ops.convert_to_tensor(self._kernel)
        blurred = ops.depthwise_conv(x, kernel, strides=1, padding="same")
        blurred2 = ops.depthwise_conv(blurred, kernel, strides=1, padding="same")
        w = per_image(blur_w)
        x = (
            x * ops.maximum(1.0 - 2.0 * w, 0.0)
            + blurred * (1.0 - ops.abs(1.0 - 2.0 * w))
            + blurred2 * ops.maximum(2.0 * w - 1.0, 0.0)
        )
        noise_sd = ops.where(u[:, 11] < 2.0 * c["p_noise"] - 1.0, (u[:, 12] + 1.0) * 0.012, 0.0)
        x = x + keras.random.normal(ops.shape(x), seed=self.seed_generator) * per_image(noise_sd)
        return ops.clip(x * 255.0, 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), **self.cfg, "seed": self.seed}


def build_robust_augmenter(seed: int) -> keras.Sequential:
    """Augmentation for a lab never seen: geometry with a wider zoom (the crop's size estimate
    errs by up to ~25 %), then :class:`StainShift`."""
    return keras.Sequential(
        [
            RandomAffineCell(zoom=(0.8, 1.25), shift=0.08, seed=seed, name="random_affine"),
            StainShift(seed=seed + 1, name="stain_shift"),
        ],
        name="augment_robust",
    )


def build_augmenter(seed: int) -> keras.Sequential:
    """On-the-fly augmentation on [0, 255] RGB, inside the training model only:
    geometry (flips, any rotation, zoom, shift) and colour/stain jitter."""
    return keras.Sequential(
        [RandomAffineCell(seed=seed, name="random_affine"), StainJitter(seed=seed + 1, name="stain_jitter")],
        name="augment",
    )


def build_training_model(core: keras.Model, seed: int, *, robust: bool = False) -> keras.Model:
    inputs = keras.Input(shape=core.input_shape[1:], name="image")
    x = (build_robust_augmenter if robust else build_augmenter)(seed)(inputs)
    return keras.Model(inputs, core(x), name="train_wrapper")


def set_backbone_trainable(core: keras.Model, unfreeze_from: str | None) -> int:
    """Freeze the backbone, then unfreeze every non-BatchNorm backbone layer from the
    layer whose name starts with ``unfreeze_from`` (e.g. ``block5a``) to the top.
    BatchNorm layers stay frozen (inference mode) throughout. Returns #trainable layers."""
    started = False
    n = 0
    for layer in core.layers:
        if layer.name.startswith(("stem_", "block", "top_")):
            if unfreeze_from and layer.name.startswith(unfreeze_from):
                started = True
            trainable = started and not isinstance(layer, layers.BatchNormalization)
            layer.trainable = trainable
            n += int(trainable and bool(layer.weights))
        elif layer.weights:
            layer.trainable = True
            n += 1
    return n
