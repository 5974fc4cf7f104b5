"""Every PIL image mode to uint8 RGB (images) or to values (masks), by value, never by clipping.

PIL's own ``convert("RGB")`` clips 16-bit greyscale to 255, so a 16-bit PNG becomes a white image;
here the value range is rescaled instead:

=============================  ==============================================================
mode                           uint8 value
=============================  ==============================================================
``I;16``, ``I;16B``, ``I;16L``  ``round(v / 257)``: 0 -> 0, 32768 -> 128, 65535 -> 255
``I`` (32-bit int)             taken as 16-bit data (how PIL reads 16-bit PNG and TIFF): as
                               above; values outside [0, 65535] are an error
``F`` (32-bit float)           taken as [0, 1]: ``round(255 v)``; outside [0, 1] or not finite
                               is an error
``P`` with transparency,       colour values kept, alpha dropped (PIL's convert through RGBA)
``LA``, ``RGBA``, ``La``, ...
``1``, ``L``, ``P``, ``CMYK``,  PIL's ``convert("RGB")`` (the definitions coincide)
``YCbCr``, ``RGB``
=============================  ==============================================================

Masks are read as values, not colours: a palette mask's indices, a 16-bit mask's integers, any
non-zero colour channel of an RGB mask; non-zero is foreground.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


class BadPixels(ValueError):
    """A readable image whose contents are wrong: zero size, values outside its mode's range, wrong mode."""


SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
RGB_VIA_PIL = ("1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr")
ALPHA = ("LA", "La", "PA", "RGBA", "RGBa")


def _scale16(values: np.ndarray) -> np.ndarray:
    """(H, W) integers in [0, 65535] -> uint8 ``round(v / 257)`` (257 is odd: no ties)."""
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _grey_to_uint8(im: Image.Image) -> np.ndarray:
    """(H, W) uint8 from a 16-bit, 32-bit int or float greyscale image; BadPixels outside its range."""
    values = np.asarray(im)
    if im.mode == "F":
        if not np.isfinite(values).all() or values.size and not 0.0 <= values.min() <= values.max() <= 1.0:
            raise BadPixels(f"float image (mode F) with values outside [0, 1] "
                             f"(min {np.nanmin(values):g}, max {np.nanmax(values):g})")
        return np.rint(values.astype(np.float64) * 255.0).astype(np.uint8)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise BadPixels(f"integer image (mode {im.mode}) with values outside [0, 65535] "
                         f"(min {values.min()}, max {values.max()})")
    return _scale16(values)


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> an RGB image by value (table above). BadPixels for a mode with no RGB meaning."""
    if im.width == 0 or im.height == 0:
        raise BadPixels(f"zero-size image ({im.width} x {im.height})")
    if im.mode in SIXTEEN_BIT or im.mode in ("I", "F"):
        return Image.fromarray(_grey_to_uint8(im), "L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        return im.convert("RGBA").convert("RGB")
    if im.mode in RGB_VIA_PIL or im.mode in ALPHA:
        return im.convert("RGB")
    raise BadPixels(f"unsupported image mode {im.mode}")


def mask_values(im: Image.Image) -> np.ndarray:
    """A mask image -> (H, W) bool, non-zero value = foreground (palette indices, not colours)."""
    if im.width == 0 or im.height == 0:
        raise BadPixels(f"zero-size mask ({im.width} x {im.height})")
    if im.mode in ("1", "L", "P", "I", "F") or im.mode in SIXTEEN_BIT:
        return np.asarray(im) != 0
    if im.mode in ("LA", "PA"):  # the grey value or palette index; alpha is not the mask
        return np.asarray(im)[..., 0] != 0
    if im.mode in ALPHA:
        return (np.asarray(im.convert("RGBA"))[..., :3] != 0).any(axis=-1)
    if im.mode in RGB_VIA_PIL:
        return (np.asarray(im.convert("RGB")) != 0).any(axis=-1)
    raise BadPixels(f"unsupported mask mode {im.mode}")
