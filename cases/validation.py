"""Upload validation: decode with Pillow, never trust the file name or the browser."""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from io import BytesIO

from django.conf import settings
from django.core.files import File
from PIL import Image, UnidentifiedImageError

# Formats microscope cameras write, as Pillow names them.
ACCEPTED_FORMATS = {"JPEG", "PNG", "TIFF", "BMP"}
# How a stored image is named and served: from the decoded format, never from the user's file name
# (a PNG uploaded as "x.html" must not come back as a web page).
FORMAT_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "BMP": ".bmp"}
FORMAT_MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "TIFF": "image/tiff", "BMP": "image/bmp"}


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


class UploadTooLarge(Exception):
    """A request body over ``HV_MAX_UPLOAD_REQUEST_BYTES``; ``str()`` names the size and the limit."""


def _human_bytes(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB" if n >= 1024 * 1024 else f"{n} bytes"


def upload_request_check(*, content_length: int) -> None:
    """Refuse a request whose body is over the per-request limit, before any of it is read.

    Django never reads past the declared Content-Length, so checking it bounds what one request
    writes to temporary files; ``cases.middleware.UploadRequestLimitMiddleware`` calls this for
    every request, ahead of the CSRF check and the views that parse multipart bodies.
    """
    limit = settings.HV_MAX_UPLOAD_REQUEST_BYTES
    if content_length > limit:
        raise UploadTooLarge(
            f"The upload is {_human_bytes(content_length)}, over the {_human_bytes(limit)} limit for one request; "
            "nothing was stored. Upload the images in smaller batches."
        )


def _check_file_size(*, filename: str, size: int) -> None:
    max_bytes = settings.HV_MAX_UPLOAD_BYTES
    if size == 0:
        raise ImageRejected(filename, "the file is empty (0 bytes)")
    if size > max_bytes:
        raise ImageRejected(filename, f"the file is {_human_bytes(size)}, over the {_human_bytes(max_bytes)} limit")


def read_image_file(*, filename: str, content: bytes | File) -> bytes:
    """The bytes of one uploaded file; an empty or oversize file is rejected before it is read."""
    if isinstance(content, bytes):
        _check_file_size(filename=filename, size=len(content))
        return content
    _check_file_size(filename=filename, size=content.size)
    content.seek(0)
    return content.read()


def validate_image_bytes(*, filename: str, data: bytes) -> ValidatedImage:
    max_pixels = settings.HV_MAX_IMAGE_PIXELS
    _check_file_size(filename=filename, size=len(data))
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
