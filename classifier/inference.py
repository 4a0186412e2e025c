"""Serving: load the shipped classifier + its model card, predict batches of cell images
with calibrated probabilities, an "unidentified" flag and a Grad-CAM heatmap.

Contract used by the Celery tasks::

    clf = load_classifier()                      # cached per process and path
    preds = clf.predict(images=[pil_img, ...])   # list[CellPrediction], same order

Temperature, threshold, the expected sha256, the output classes and the preprocessing
method come from the JSON model card next to the ``.keras`` file; a model whose sha256 does
not match its card is refused.

Outputs. wbc-lite0-v1/v2 have the four classes of ``classifier.preprocessing.CLASSES``;
from wbc-lite0-v3 on, a model has the five classes of the differential plus ``OTHER`` ("none
of these": immature granulocytes, erythroblasts, platelets, debris). The suggested class is
always the most probable *cell class*; its probability is the confidence, and a cell is
"unidentified" when the confidence is below the card's threshold, so a cell whose mass goes
to ``OTHER`` (or is split between classes) is flagged for the reviewer.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cases.cell_classes import CELL_CLASSES
from classifier.preprocessing import CLASSES, FRAME, input_shape, prepare, to_rgb8

__all__ = [
    "CLASSES",
    "CellPrediction",
    "Classifier",
    "default_card_path",
    "default_model_path",
    "load_classifier",
]

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL_NAME = "wbc-lite0-v3"
OTHER = "OTHER"  # the "none of these" output of five-class models
FEATURE_LAYER = "top_activation"  # last conv feature map of the Lite0 backbone


@dataclass(frozen=True)
class CellPrediction:
    label: str  # the most probable cell class (never OTHER)
    probabilities: dict[str, float]  # calibrated, every output of the model (OTHER included), sums to 1
    confidence: float  # calibrated probability of ``label``
    unidentified: bool  # confidence < card threshold
    heatmap_png: bytes  # Grad-CAM of ``label``, RGBA PNG of the input's width/height (b"" if not asked)
    inference_ms: float  # wall time of the batch call divided by the batch size
    cell_found: bool | None = None  # False: no white cell found, the whole image was classified; None: not looked for


def default_model_path() -> Path:
    env = os.environ.get("HEMATOVISION_MODEL_PATH")
    return Path(env) if env else MODELS_DIR / f"{DEFAULT_MODEL_NAME}.keras"


def default_card_path() -> Path:
    env = os.environ.get("HEMATOVISION_MODEL_CARD")
    return Path(env) if env else default_model_path().with_suffix(".json")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _colormap(values: np.ndarray) -> np.ndarray:
    """[0, 1] -> RGB uint8 with a blue-cyan-yellow-red ramp (jet-like)."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25])  # r, g, b
    rgb = np.clip(1.5 - np.abs(4.0 * (v - centres)), 0.0, 1.0)
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def heatmap_to_png(cam: np.ndarray, size: tuple[int, int], box: tuple[int, int, int, int] | None = None) -> bytes:
    """Low-resolution CAM in [0, 1] -> RGBA PNG of ``size`` (width, height); alpha grows
    with activation so the PNG can be laid straight over the original image. ``box`` (left,
    top, right, bottom, in image pixels, may reach outside it) is where the model's input was
    cut from; without it the CAM covers the whole image."""
    if box is None:
        box = (0, 0, *size)
    left, top, right, bottom = box
    cam_img = Image.fromarray(cam.astype(np.float32)).resize(
        (max(1, right - left), max(1, bottom - top)), Image.Resampling.BILINEAR
    )
    canvas = Image.new("F", size, 0.0)
    canvas.paste(cam_img, (left, top))
    cam_full = np.clip(np.asarray(canvas, np.float32), 0.0, 1.0)
    rgba = np.empty((*cam_full.shape, 4), np.uint8)
    rgba[..., :3] = _colormap(cam_full)
    rgba[..., 3] = (np.power(cam_full, 0.8) * 190.0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG", optimize=False, compress_level=3)
    return buf.getvalue()


class _LiteRT:
    """The exported graph (``.tflite``) run by LiteRT with XNNPACK: forward pass only."""

    def __init__(self, path: Path, threads: int):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.batch: int | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.shape[0] != self.batch:
            self.interpreter.resize_tensor_input(self.input, list(x.shape))
            self.interpreter.allocate_tensors()
            self.batch = x.shape[0]
        self.interpreter.set_tensor(self.input, np.ascontiguousarray(x, np.float32))
        self.interpreter.invoke()
        return np.asarray(self.interpreter.get_tensor(self.output), np.float64)


def inference_threads() -> int:
    """Threads one worker process gives the model: ``HV_INFER_THREADS``, else every core."""
    return max(1, int(os.environ.get("HV_INFER_THREADS") or os.cpu_count() or 1))


class Classifier:
    """A loaded model + card. Use :func:`load_classifier` rather than constructing directly.

    ``runtime``: ``auto`` serves classification through the exported graph named in the card
    (``export``: a ``.tflite`` beside the ``.keras``, its sha256 checked like the model's) and
    falls back to Keras without one; ``keras`` always uses Keras; ``litert`` requires the
    export. The Keras model stays the source of truth and computes the Grad-CAM heatmaps; it
    is loaded only when a heatmap is asked for, unless it is also the classification runtime.
    """

    def __init__(self, model_path: Path, card_path: Path, *, runtime: str = "auto", threads: int | None = None):
        self.model_path, self.card_path = Path(model_path), Path(card_path)
        self.card = json.loads(self.card_path.read_text())
        self.sha256 = sha256_of(self.model_path)
        expected = self.card.get("sha256")
        if expected and expected != self.sha256:
            raise ValueError(f"{self.model_path.name}: sha256 {self.sha256} does not match its card ({expected})")
        self.version_name: str = self.card.get("name", self.model_path.stem)
        calibration = self.card.get("calibration", {})
        self.temperature: float = float(calibration.get("temperature", 1.0))
        self.threshold: float = float(calibration.get("threshold", 0.0))
        self.classes: tuple[str, ...] = tuple(self.card.get("classes", CLASSES))
        unknown = set(self.classes) - {*CELL_CLASSES, OTHER}
        if unknown or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"model card classes {self.classes}: unknown or repeated {sorted(unknown)}")
        self.cell_outputs = np.array([i for i, c in enumerate(self.classes) if c in CELL_CLASSES])
        self.method: str = self.card.get("input_method", FRAME)
        self.input_shape = input_shape(self.method)
        self.threads = threads or inference_threads()
        self._lock = threading.Lock()
        self._tf_fns: dict[bool, object] = {}
        self._keras_model = None
        self._lite: _LiteRT | None = None
        export = self.card.get("export")
        if runtime not in ("auto", "keras", "litert"):
            raise ValueError(f"unknown runtime {runtime!r}")
        if runtime != "keras" and export:
            path = self.model_path.parent / export["file"]
            if path.exists():
                sha = sha256_of(path)
                if sha != export["sha256"]:
                    raise ValueError(f"{path.name}: sha256 {sha} does not match its card ({export['sha256']})")
                self._lite = _LiteRT(path, self.threads)
        if runtime == "litert" and self._lite is None:
            raise ValueError(f"{self.version_name}: no exported graph (card 'export' entry and file)")
        self.runtime = "litert" if self._lite is not None else "keras"
        if self._lite is None:
            self._load_keras()

    def _load_keras(self):
        if self._keras_model is None:
            import keras

            self._keras_model = keras.saving.load_model(str(self.model_path), compile=False)
            self.backend = keras.backend.backend()
            self._grad_model = keras.Model(
                self._keras_model.inputs,
                [self._keras_model.get_layer(FEATURE_LAYER).output, self._keras_model.outputs[0]],
            )
        return self._keras_model

    @property
    def model(self):
        """The Keras model (loaded on first use)."""
        return self._load_keras()

    # ------------------------------------------------------------------ internals
    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw logits of a prepared batch (see :meth:`prepare_batch`): the exported graph when
        there is one, else Keras (compiled once per process on TensorFlow)."""
        if self._lite is not None:
            return self._lite(x)
        return self._keras_logits(x)

    def _keras_logits(self, x: np.ndarray) -> np.ndarray:
        self._load_keras()
        if self.backend == "tensorflow":
            fn = self._tf_fns.get(False)
            if fn is None:
                import tensorflow as tf

                model = self._keras_model
                fn = tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)
                self._tf_fns[False] = fn
            return np.asarray(fn(x).numpy(), np.float64)
        if self.backend == "torch":
            import torch

            with torch.no_grad():
                return np.asarray(self._keras_model(torch.as_tensor(x), training=False).cpu().numpy(), np.float64)
        import keras

        return np.asarray(keras.ops.convert_to_numpy(self._keras_model(x, training=False)), np.float64)

    def _top_cell_class(self, logits):
        """Index (into the outputs) of the most probable cell class, per row."""
        return self.cell_outputs[np.asarray(logits)[:, self.cell_outputs].argmax(axis=1)]

    def _logits_and_cams(self, x: np.ndarray, targets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One batched Keras forward + backward pass: logits and the Grad-CAM of ``targets``
        (output indices), by default of the top cell class."""
        self._load_keras()
        if targets is None:
            logits = self._keras_logits(x)
            targets = self._top_cell_class(logits)
        targets = np.asarray(targets, np.int64)
        if self.backend == "tensorflow":
            fn = self._tf_fns.get(True)
            if fn is None:
                import tensorflow as tf

                grad_model = self._grad_model

                @tf.function(reduce_retracing=True)
                def fn(batch, top):
                    with tf.GradientTape() as tape:
                        feats, logits = grad_model(batch, training=False)
                        score = tf.reduce_sum(tf.gather(logits, top, axis=1, batch_dims=1))
                    grads = tape.gradient(score, feats)
                    return logits, feats, grads

                self._tf_fns[True] = fn
            logits, feats, grads = (t.numpy() for t in fn(x, targets))
        elif self.backend == "torch":
            import torch

            batch = torch.as_tensor(x)
            with torch.enable_grad():
                feats, logits = self._grad_model(batch, training=False)
                top = torch.as_tensor(targets, device=logits.device)
                score = logits.gather(1, top[:, None]).sum()
                (grads,) = torch.autograd.grad(score, feats)
            logits, feats, grads = (t.detach().cpu().numpy() for t in (logits, feats, grads))
        else:  # pragma: no cover - jax/openvino serving is not configured
            raise NotImplementedError(f"Grad-CAM is not implemented for the {self.backend} backend")
        weights = grads.mean(axis=(1, 2))  # (n, C): global-average-pooled gradients
        cams = np.maximum(np.einsum("nhwc,nc->nhw", feats, weights), 0.0)
        peak = cams.reshape(len(cams), -1).max(axis=1)
        cams = cams / np.where(peak > 0, peak, 1.0)[:, None, None]
        return np.asarray(logits, np.float64), cams

    def prepare_batch(self, images: list[Image.Image]):
        """(upright RGB images, their :class:`Prepared` inputs, the float32 model batch)."""
        rgb = [to_rgb8(img) for img in images]
        prepared = [prepare(img, method=self.method) for img in rgb]
        x = np.empty((len(rgb), *self.input_shape), np.float32)
        for i, p in enumerate(prepared):
            x[i] = p.array
        return rgb, prepared, x

    # ------------------------------------------------------------------ API
    def predict(self, *, images: list[Image.Image], with_heatmap: bool = False) -> list[CellPrediction]:
        """Classify a batch. ``with_heatmap`` adds the Grad-CAM of each suggested class in the
        same (Keras) pass; the workers classify without it and compute heatmaps afterwards
        (:meth:`heatmaps`), so classification never waits on them."""
        if not images:
            return []
        start = time.perf_counter()
        rgb, prepared, x = self.prepare_batch(images)
        with self._lock:
            if with_heatmap:
                logits, cams = self._logits_and_cams(x)
            else:
                logits, cams = self.logits(x), None
        z = logits / self.temperature
        z -= z.max(axis=1, keepdims=True)
        probs = np.exp(z)
        probs /= probs.sum(axis=1, keepdims=True)
        pngs = [
            heatmap_to_png(cams[i], rgb[i].size, prepared[i].box) if cams is not None else b"" for i in range(len(rgb))
        ]
        top = self._top_cell_class(probs)
        per_image_ms = (time.perf_counter() - start) * 1000.0 / len(rgb)
        out = []
        for i, p in enumerate(probs):
            k = int(top[i])
            conf = float(p[k])
            out.append(
                CellPrediction(
                    label=self.classes[k],
                    probabilities={c: float(v) for c, v in zip(self.classes, p, strict=True)},
                    confidence=conf,
                    unidentified=conf < self.threshold,
                    heatmap_png=pngs[i],
                    inference_ms=per_image_ms,
                    cell_found=prepared[i].cell_found,
                )
            )
        return out

    def heatmaps(self, *, images: list[Image.Image], labels: list[str]) -> list[bytes]:
        """Grad-CAM of class ``labels[i]`` on ``images[i]`` (RGBA PNGs of each image's size,
        placed on the cell the model looked at)."""
        if not images:
            return []
        rgb, prepared, x = self.prepare_batch(images)
        targets = np.array([self.classes.index(label) for label in labels])
        with self._lock:
            _, cams = self._logits_and_cams(x, targets)
        return [heatmap_to_png(cams[i], rgb[i].size, prepared[i].box) for i in range(len(rgb))]


_CACHE: dict[tuple[str, str], Classifier] = {}
_CACHE_LOCK = threading.Lock()


def load_classifier(*, model_path: Path | None = None, card_path: Path | None = None) -> Classifier:
    """Load (once per process per model/card path) the classifier. Defaults to the shipped model."""
    model_path = Path(model_path) if model_path else default_model_path()
    card_path = (
        Path(card_path)
        if card_path
        else (model_path.with_suffix(".json") if model_path != default_model_path() else default_card_path())
    )
    key = (str(model_path.resolve()), str(card_path.resolve()))
    with _CACHE_LOCK:
        clf = _CACHE.get(key)
        if clf is None:
            clf = Classifier(model_path, card_path)
            _CACHE[key] = clf
        return clf
