"""Upload validation: decode with Pillow, never trust the file name or the browser."""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from io import BytesIO

from django.conf import settings
from PIL import Image, UnidentifiedImageError

# Formats microscope cameras write, as Pillow names them.
ACCEPTED_FORMATS = {"JPEG", "PNG", "TIFF", "BMP"}


class ImageRejected(Exception):
    """A file that is not accepted; ``str()`` names the file and the reason."""

    def __init__(self, filename: str, reason: str):
        self.filename = filename
        self.reason = reason
        super().__init__(f"{filename}: {reason}")


@dataclass(frozen=True)
class ValidatedImage:
    filename: str
    data: bytes
    sha256: str
    image_format: str
    width: int
    height: int


def _human_bytes(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB" if n >= 1024 * 1024 else f"{n} bytes"


def validate_image_bytes(*, filename: str, data: bytes) -> ValidatedImage:
    max_bytes = settings.HV_MAX_UPLOAD_BYTES
    max_pixels = settings.HV_MAX_IMAGE_PIXELS
    if len(data) == 0:
        raise ImageRejected(filename, "the file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageRejected(
            filename, f"the file is {_human_bytes(len(data))}, over the {_human_bytes(max_bytes)} limit"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(BytesIO(data)) as img:
                fmt = img.format or ""
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageRejected(
                        filename,
                        f"the image is {width}×{height} pixels, over the {max_pixels:,} pixel limit",
                    )
                if fmt not in ACCEPTED_FORMATS:
                    raise ImageRejected(
                        filename,
                        f"{fmt or 'this'} images are not accepted "
                        f"(accepted: {', '.join(sorted(ACCEPTED_FORMATS))})",
                    )
                img.load()  # full decode: catches truncated and corrupt files
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(filename, "the image has too many pixels (possible decompression bomb)") from None
    except UnidentifiedImageError:
        raise ImageRejected(filename, "the file is not an image that can be decoded") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(filename, f"the image is damaged or truncated ({exc})") from None
    if width < 16 or height < 16:
        raise ImageRejected(filename, f"the image is only {width}×{height} pixels; too small for a cell")
    return ValidatedImage(
        filename=filename,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        image_format=fmt,
        width=width,
        height=height,
    )
