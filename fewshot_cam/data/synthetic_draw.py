"""Drawing primitives of the built-in benchmark: object shapes, object patterns, background textures.

Everything works on a batch of images at once: per-image parameters are ``(n, 1, 1)`` arrays that
broadcast against a pixel grid ``(1, H, W)`` of coordinates in [-1, 1]. Parameters are drawn from the
caller's ``np.random.Generator`` in a fixed order and independently of the image size, so the same
seed gives the same scene at every resolution.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from matplotlib.colors import hsv_to_rgb

Array = np.ndarray

# colour family -> hue in degrees
COLOURS: dict[str, float] = {
    "red": 0.0, "orange": 28.0, "yellow": 55.0, "green": 120.0,
    "cyan": 182.0, "blue": 225.0, "purple": 272.0, "pink": 318.0,
}


def _polar(u: Array, v: Array) -> tuple[Array, Array]:
    return np.hypot(u, v), np.arctan2(v, u)


def _star(u: Array, v: Array) -> Array:
    r, a = _polar(u, v)
    spike = np.abs((a * 5 / (2 * np.pi)) % 1.0 - 0.5) * 2  # 1 at the 5 tips, 0 between them
    return r < 0.42 + 0.58 * spike


# shape family -> indicator in canonical coordinates (the shape fills about the unit disc)
SHAPES: dict[str, Callable[[Array, Array], Array]] = {
    "circle": lambda u, v: u * u + v * v < 1.0,
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) < 0.8,
    "triangle": lambda u, v: (v > -0.5) & (v < 1.0 - np.sqrt(3.0) * np.abs(u)),
    "star": _star,
    "cross": lambda u, v: ((np.abs(u) < 0.3) & (np.abs(v) < 0.95)) | ((np.abs(v) < 0.3) & (np.abs(u) < 0.95)),
    "ring": lambda u, v: np.abs(np.hypot(u, v) - 0.75) < 0.25,
    "ellipse": lambda u, v: u * u + (v / 0.5) ** 2 < 1.0,
    "crescent": lambda u, v: (u * u + v * v < 1.0) & ((u - 0.5) ** 2 + v * v > 0.6),
}

# pattern -> weight of the secondary colour (0 primary, 1 secondary), in object coordinates
PATTERNS: dict[str, Callable[[Array, Array], Array]] = {
    "solid": lambda u, v: np.zeros(np.broadcast_shapes(u.shape, v.shape)),
    "stripes": lambda u, v: (np.sin(np.pi * 3.2 * u) > 0).astype(float),
    "dots": lambda u, v: ((u * 1.7 % 1.0 - 0.5) ** 2 + (v * 1.7 % 1.0 - 0.5) ** 2 < 0.08).astype(float),
    "checker": lambda u, v: ((np.floor(u * 1.9) + np.floor(v * 1.9)) % 2).astype(float),
}


def grid(size: int) -> tuple[Array, Array]:
    """Pixel-centre coordinates in [-1, 1]: x, y of shape (1, size, size)."""
    c = (np.arange(size) + 0.5) / size * 2 - 1
    return c[None, None, :], c[None, :, None]


def _col(a: Array) -> Array:
    return a[:, None, None]  # (n,) -> (n, 1, 1)


def object_params(rng: np.random.Generator, n: int) -> dict[str, Array]:
    """Per-image pose and deformation of the foreground object, each (n,)."""
    return {
        "cx": rng.uniform(-0.3, 0.3, n), "cy": rng.uniform(-0.3, 0.3, n),
        "scale": rng.uniform(0.42, 0.68, n), "angle": rng.uniform(0, 2 * np.pi, n),
        "aspect": np.exp(rng.uniform(-0.18, 0.18, n)),
        "warp": rng.uniform(0.0, 0.12, n), "warp_freq": rng.uniform(2.0, 4.0, n),
        "phase_u": rng.uniform(0, 2 * np.pi, n), "phase_v": rng.uniform(0, 2 * np.pi, n),
        "light": rng.uniform(0, 2 * np.pi, n),
    }


def object_colours(rng: np.random.Generator, hue: float, n: int) -> Array:
    """Primary and secondary (darker or lighter) colour per image: (n, 2, 3) RGB in [0, 1]."""
    h = (hue + rng.uniform(-10, 10, n)) % 360 / 360
    s = rng.uniform(0.6, 1.0, n)
    v = rng.uniform(0.65, 1.0, n)
    primary = hsv_to_rgb(np.stack([h, s, v], -1))
    dark = rng.random(n) < 0.6
    tint = np.where(dark, 0.0, 1.0)[:, None]
    secondary = primary * 0.35 + tint * 0.65 * rng.uniform(0.8, 1.0, n)[:, None]
    return np.stack([primary, secondary], 1)


def _pool(a: Array, ss: int) -> Array:
    """(n, S*ss, S*ss) -> (n, S, S) by averaging ss x ss blocks."""
    size = a.shape[-1] // ss
    return a.reshape(-1, size, ss, size, ss).mean((2, 4))


def render_object(shape: str, pattern: str, p: dict[str, Array], colours: Array, size: int) -> tuple[Array, Array]:
    """Draw one object per image at ``size`` (supersampled 2x for soft edges).

    Returns the colour premultiplied by coverage (n, size, size, 3) and the coverage (n, size, size) in [0, 1].
    """
    ss = 2 if size <= 64 else 1
    x, y = grid(size * ss)
    dx, dy = x - _col(p["cx"]), y - _col(p["cy"])
    cos, sin = np.cos(_col(p["angle"])), np.sin(_col(p["angle"]))
    sa = _col(p["scale"] * p["aspect"])
    sb = _col(p["scale"] / p["aspect"])
    u = (cos * dx + sin * dy) / sa  # (n, S, S) object coordinates
    v = (-sin * dx + cos * dy) / sb
    amp, freq = _col(p["warp"]), _col(p["warp_freq"])
    u, v = u + amp * np.sin(freq * v + _col(p["phase_u"])), v + amp * np.sin(freq * u + _col(p["phase_v"]))
    inside = SHAPES[shape](u, v).astype(np.float32)
    light = 1.0 + 0.15 * (np.cos(_col(p["light"])) * u + np.sin(_col(p["light"])) * v)
    lit = inside * light  # (n, S, S) light reaching the primary colour
    lit_secondary = lit * PATTERNS[pattern](u, v)  # the share of it that the pattern paints secondary
    if ss > 1:  # colour is linear in these two fields, so average them before colouring
        lit, lit_secondary, inside = (_pool(a, ss) for a in (lit, lit_secondary, inside))
    primary, secondary = colours[:, None, None, 0], colours[:, None, None, 1]  # (n, 1, 1, 3)
    premult = lit[..., None] * primary + lit_secondary[..., None] * (secondary - primary)
    return premult, inside


def background_params(rng: np.random.Generator, n: int) -> dict[str, Array]:
    """Per-image randomness of the background texture (every texture's, so draws never depend on the family)."""
    return {
        "angle": rng.uniform(0, 2 * np.pi, n), "phase": rng.uniform(0, 2 * np.pi, n),
        "noise": rng.random((n, 7, 7)), "blob_xy": rng.uniform(-1, 1, (n, 4, 2)),
        "blob_sigma": rng.uniform(0.2, 0.45, (n, 4)), "blob_sign": rng.choice([-1.0, 1.0], (n, 4)),
        "jitter": rng.uniform(-0.08, 0.08, (n, 2, 3)),
    }


def _upsample(g: Array, size: int) -> Array:
    """Bilinear upsampling of (n, k, k) to (n, size, size), corners aligned."""
    k = g.shape[-1]
    pos = np.linspace(0, k - 1, size)
    lo = np.minimum(pos.astype(int), k - 2)
    w = np.zeros((size, k))
    w[np.arange(size), lo] = 1 - (pos - lo)
    w[np.arange(size), lo + 1] = pos - lo
    return np.einsum("yi,nij,xj->nyx", w, g, w)


def _along(p: dict[str, Array], size: int) -> Array:
    x, y = grid(size)
    return np.cos(_col(p["angle"])) * x + np.sin(_col(p["angle"])) * y


def _noise(p: dict[str, Array], size: int, level: int) -> Array:
    k = 3 + level % 4  # coarser or finer blotches per family
    return _upsample(p["noise"][:, :k, :k], size)


def _gradient(p: dict[str, Array], size: int, level: int) -> Array:
    return np.clip(0.5 + (0.35 + 0.15 * (level % 4)) * _along(p, size), 0, 1)


def _stripes(p: dict[str, Array], size: int, level: int) -> Array:
    cycles = 1.0 + 0.5 * (level % 4)  # wide bands: 1 to 2.5 periods across the image
    return 0.5 + 0.5 * np.sin(np.pi * cycles * _along(p, size) + _col(p["phase"]))


def _blobs(p: dict[str, Array], size: int, level: int) -> Array:
    x, y = grid(size)
    m = 2 + level % 3
    bx, by = p["blob_xy"][:, :m, 0, None, None], p["blob_xy"][:, :m, 1, None, None]  # (n, m, 1, 1)
    d2 = (x[:, None] - bx) ** 2 + (y[:, None] - by) ** 2
    g = p["blob_sign"][:, :m, None, None] * np.exp(-d2 / (2 * p["blob_sigma"][:, :m, None, None] ** 2))
    return np.clip(0.5 + 0.6 * g.sum(1), 0, 1)


# texture type -> scalar field in [0, 1], (n, size, size); ``level`` varies it between families of one type
TEXTURES: dict[str, Callable[[dict[str, Array], int, int], Array]] = {
    "noise": _noise, "gradient": _gradient, "stripes": _stripes, "blobs": _blobs,
}


def background_family(family: int, n_families: int) -> tuple[str, float, int]:
    """Family id -> (texture type, hue in degrees, level): hue and texture both tell families apart."""
    names = list(TEXTURES)
    return names[family % len(names)], (family * 360.0 / n_families + 10.0) % 360, family // len(names)


def render_backgrounds(families: Array, n_families: int, p: dict[str, Array], size: int) -> Array:
    """Textured backgrounds of the given families: (n, size, size, 3) RGB in [0, 1]."""
    out = np.empty((len(families), size, size, 3))
    for f in np.unique(families):  # a handful of families per batch
        sel = families == f
        texture, hue, level = background_family(int(f), n_families)
        field = TEXTURES[texture]({k: a[sel] for k, a in p.items()}, size, level)[..., None]
        dark = hsv_to_rgb([hue / 360, 0.45, 0.4]) + p["jitter"][sel, 0]
        bright = hsv_to_rgb([((hue + 30) % 360) / 360, 0.35, 0.85]) + p["jitter"][sel, 1]
        out[sel] = dark[:, None, None] * (1 - field) + bright[:, None, None] * field
    return out
