"""A small bar chart as PNG bytes, for the vocabulary card's cluster-size histogram.

No plotting library is a dependency of hf_metaid, and a histogram of bars needs no fonts: the picture is drawn into a
numpy array and encoded with the standard library's zlib (PNG is zlib-compressed rows plus three checksummed chunks).
The same counts give byte-identical files. The card's text gives the axes and the numbers.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import numpy as np

from ..checks import check_int

BACKGROUND = (255, 255, 255)
BAR = (52, 101, 164)
AXIS = (96, 96, 96)


def histogram_bins(values: Sequence[int], bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, edges)`` of integer ``values`` in at most ``bins`` equal-width bins of whole numbers (one bin per
    value where the range is narrower than ``bins``)."""
    check_int("bins", bins, minimum=1)
    array = np.asarray(values, dtype=np.int64)
    if not array.size:
        return np.zeros(0, np.int64), np.zeros(1, np.int64)
    low, high = int(array.min()), int(array.max())
    width = max(1, -(-(high - low + 1) // bins))  # ceil: every bin holds whole numbers
    edges = np.arange(low, high + width + 1, width, dtype=np.int64)
    counts = np.bincount((array - low) // width, minlength=len(edges) - 1)
    return counts.astype(np.int64), edges


def bar_chart_png(counts: Sequence[int], width: int = 320, height: int = 120, margin: int = 6) -> bytes:
    """PNG bytes of a bar chart of ``counts`` (left to right), bars scaled to the largest count, with an x axis."""
    counts = np.asarray(counts, dtype=np.int64)
    check_int("width", width, minimum=2 * margin + max(1, len(counts)))
    check_int("height", height, minimum=2 * margin + 2)
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:] = BACKGROUND
    inner_width, inner_height = width - 2 * margin, height - 2 * margin - 1
    baseline = height - margin - 1
    pixels[baseline, margin : width - margin] = AXIS
    peak = int(counts.max()) if counts.size else 0
    for index, count in enumerate(counts.tolist()):
        left = margin + index * inner_width // len(counts)
        right = margin + (index + 1) * inner_width // len(counts) - 1  # one blank column between bars
        bar = 0 if peak == 0 else max(1 if count else 0, round(count * inner_height / peak))
        if bar and right > left:
            pixels[baseline - bar : baseline, left:right] = BAR
    return encode_png(pixels)


def encode_png(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of a ``(height, width, 3)`` uint8 array (filter 0 on every row)."""
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"pixels must be a (height, width, 3) uint8 array, got {pixels.dtype} {pixels.shape}")
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, RGB, deflate, no filter, no interlace
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
