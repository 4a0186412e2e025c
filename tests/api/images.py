"""Test images (cached bytes): real cells converted to the formats microscope software writes, and bad files."""
from __future__ import annotations

import io
import struct
import zlib
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

CELLS = Path(__file__).resolve().parent.parent / "fixtures" / "cells"


def real_cell(index: int = 0) -> Path:
    return sorted(CELLS.glob("*/*.jpeg"))[index]


def _save(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def _cell(index: int = 0) -> Image.Image:
    with Image.open(real_cell(index)) as img:
        return img.convert("RGB")


@cache
def cmyk_jpeg(index=0) -> bytes:
    return _save(_cell(index).convert("CMYK"), "JPEG", quality=90)


@cache
def png_16bit(index=0) -> bytes:
    cell = _cell(index)
    gray = np.asarray(cell.convert("L"), dtype=np.uint16) * 257  # full 16-bit range
    img = Image.frombytes("I;16", cell.size, gray.astype("<u2").tobytes())
    return _save(img, "PNG")


@cache
def png_alpha(index=0) -> bytes:
    img = _cell(index).convert("RGBA")
    img.putalpha(Image.linear_gradient("L").resize(img.size))
    return _save(img, "PNG")


@cache
def grayscale_jpeg(index=0) -> bytes:
    return _save(_cell(index).convert("L"), "JPEG")


@cache
def exif_rotated_jpeg(index=0) -> bytes:
    """Stored landscape (320×240) with EXIF orientation 6: shown upright as portrait 240×320."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(_cell(index), "JPEG", exif=exif.tobytes())


@cache
def tiff(index=0) -> bytes:
    return _save(_cell(index), "TIFF", compression="tiff_lzw")


@cache
def bmp(index=0) -> bytes:
    return _save(_cell(index), "BMP")


@cache
def png(index=0) -> bytes:
    return _save(_cell(index), "PNG")


@cache
def gif(index=0) -> bytes:
    return _save(_cell(index).convert("P"), "GIF")


@cache
def truncated_jpeg(index=0) -> bytes:
    data = real_cell(index).read_bytes()
    return data[: len(data) * 2 // 3]


@cache
def png_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A few hundred bytes that declare a 3.6-gigapixel image (decompression bomb)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    row = b"\x00" + b"\x00" * width
    body = zlib.compress(row * 4, 9)  # only a few rows; decoding the rest would need gigabytes
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
