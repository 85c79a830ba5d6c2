"""The mini world's renderer: small RGB images of objects with named factors, and their captions.

Every image is a pure function of a :class:`Scene` (what to draw) and a seed (the pixel-level
noise), both drawn from a numpy generator seeded by ``(seed, dataset, split, index)``; the same
inputs give the same bytes on every run. Only numpy and PIL are used.

Factors, all with English names so that captions and class names read naturally:
shape, colour, pattern, size, position, rotation, count, background and rendering style.
Glyphs are drawn large (radius up to 12 px on a 32 px image) and chosen to stay distinct at that
size: a rotated square is never a diamond here, and pentagon/hexagon/circle are not all present.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SUPERSAMPLE = 4

# --- factor vocabularies -------------------------------------------------------------------

SHAPES = ("circle", "square", "triangle", "plus", "star", "heart", "ring", "crescent", "arrow", "hourglass", "tee", "bar")
SHAPE_PLURALS = {"plus": "pluses", "hourglass": "hourglasses"}

COLOURS = {
    "red": (215, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (240, 215, 35),
    "lime": (150, 225, 40),
    "green": (30, 150, 50),
    "cyan": (40, 210, 220),
    "blue": (35, 70, 215),
    "purple": (125, 45, 185),
    "pink": (245, 120, 190),
    "brown": (125, 75, 35),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}

PATTERNS = ("solid", "striped", "dotted", "checkered", "gradient")
SIZES = {"small": (4.5, 6.0), "medium": (7.0, 8.5), "large": (9.5, 11.5)}
BACKGROUNDS = ("plain", "noisy", "gradient", "textured")
STYLES = ("flat", "shaded", "sketch", "sensor", "cartoon")  # what the CLIP corpus shows
# Styles only downstream test copies use, never seen upstream (a domain shift for the tiny CLIP):
# "pencil" is a sketch whose ink keeps only a third of the object's colour, as ImageNet-Sketch's
# mostly grey drawings keep little of the photo's.
SHIFT_STYLES = ("pencil",)
STYLE_PREFIX = {"flat": "a photo of", "shaded": "a rendering of", "sketch": "a sketch of", "sensor": "a noisy photo of", "cartoon": "a cartoon of", "pencil": "a sketch of"}
PENCIL_COLOUR = 1 / 3
COUNT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")
X_BINS = ("left", "center", "right")


def plural(shape: str) -> str:
    return SHAPE_PLURALS.get(shape, shape + "s")


# --- shapes as polygons in unit coordinates (radius 1, y down) --------------------------------


def _ngon(n: int, r: float = 1.0, phase: float = -math.pi / 2) -> list:
    return [(r * math.cos(phase + 2 * math.pi * k / n), r * math.sin(phase + 2 * math.pi * k / n)) for k in range(n)]


def _star(points: int = 5, inner: float = 0.42) -> list:
    out = []
    for k in range(2 * points):
        r = 1.0 if k % 2 == 0 else inner
        a = -math.pi / 2 + math.pi * k / points
        out.append((r * math.cos(a), r * math.sin(a)))
    return out


def _heart() -> list:
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return list(zip(x / 17.0, (y + 2.5) / 17.0))


def _rect(x0, y0, x1, y1) -> list:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


# Each shape: list of (polygon, fill) drawn in order; fill 0 erases (holes).
SHAPE_POLYGONS = {
    "circle": [(_ngon(48), 1)],
    "square": [(_rect(-0.8, -0.8, 0.8, 0.8), 1)],
    "triangle": [([(0, -1.0), (0.95, 0.75), (-0.95, 0.75)], 1)],
    "plus": [(_rect(-0.3, -0.95, 0.3, 0.95), 1), (_rect(-0.95, -0.3, 0.95, 0.3), 1)],
    "star": [(_star(5), 1)],
    "heart": [(_heart(), 1)],
    "ring": [(_ngon(48), 1), (_ngon(48, 0.55), 0)],
    "crescent": [(_ngon(48), 1), ([(x + 0.45, y - 0.2) for x, y in _ngon(48, 0.85)], 0)],
    "arrow": [(_rect(-1.0, -0.25, 0.1, 0.25), 1), ([(0.05, -0.75), (1.0, 0.0), (0.05, 0.75)], 1)],
    "hourglass": [([(-0.8, -0.95), (0.8, -0.95), (0.12, 0.0), (0.8, 0.95), (-0.8, 0.95), (-0.12, 0.0)], 1)],
    "tee": [(_rect(-0.95, -0.95, 0.95, -0.4), 1), (_rect(-0.28, -0.4, 0.28, 0.95), 1)],
    "bar": [(_rect(-1.0, -0.33, 1.0, 0.33), 1)],
}
# Fine-grained variants (FGVC-mini): stars with 4..8 points.
STAR_VARIANTS = {f"{n}-pointed star": [(_star(n, 0.45 if n < 7 else 0.55), 1)] for n in range(4, 9)}


def polygons_for(shape: str) -> list:
    if shape in SHAPE_POLYGONS:
        return SHAPE_POLYGONS[shape]
    if shape in STAR_VARIANTS:
        return STAR_VARIANTS[shape]
    raise KeyError(f"unknown shape {shape!r}")


# --- scenes ----------------------------------------------------------------------------------


@dataclass
class Scene:
    """Everything the renderer needs; a downstream label is one (or a combination) of these."""

    shape: str = "circle"
    colour: str = "red"
    pattern: str = "solid"
    size: str = "medium"
    count: int = 1
    background: str = "plain"
    style: str = "flat"
    rotation: float = 0.0  # degrees, for every object
    x_bin: str | None = None  # constrain the (single) object to a horizontal third
    # filled in by layout(): per-object centre and radius in pixels
    objects: list = field(default_factory=list)
    rgb: tuple | None = None  # exact fill colour (fine-grained shades); else COLOURS[colour] + jitter

    def to_dict(self) -> dict:
        return asdict(self)


def luminance(rgb) -> float:
    r, g, b = (c / 255.0 for c in rgb)
    return 0.299 * r + 0.587 * g + 0.114 * b


def _place(count, lo, hi, radius, s, image_size, x_range, rng):
    objects = []
    for _ in range(count):
        for attempt in range(100):
            r = (radius if radius is not None else rng.uniform(lo, hi)) * s
            margin = r * 0.95
            xl, xh = margin, image_size - margin
            if x_range is not None:
                xl, xh = max(xl, x_range[0] * image_size), min(xh, x_range[1] * image_size)
            cx = rng.uniform(xl, max(xl, xh))
            cy = rng.uniform(margin, image_size - margin)
            if all((cx - ox) ** 2 + (cy - oy) ** 2 > (r + orr + 0.5 * s) ** 2 for ox, oy, orr in objects):
                objects.append((float(cx), float(cy), float(r)))
                break
        else:
            return None
    return objects


def layout(scene: Scene, rng: np.random.Generator, image_size: int = 32, radius: float | None = None, x_range=None) -> Scene:
    """Place ``scene.count`` objects without overlap; size sets the radius unless given."""
    s = image_size / 32.0
    lo, hi = SIZES[scene.size]
    if scene.count > 1:  # several objects must fit: shrink them with the count
        shrink = {2: 0.75, 3: 0.62, 4: 0.55}.get(scene.count, 0.45)
        lo, hi = lo * shrink, hi * shrink
    for shrink_more in (1.0, 0.85, 0.7, 0.55, 0.4):  # crowded scenes: shrink until they fit
        objects = _place(scene.count, lo * shrink_more, hi * shrink_more, radius, s, image_size, x_range, rng)
        if objects is not None:
            break
    else:
        raise RuntimeError(f"could not place {scene.count} objects of size {scene.size}")
    scene.objects = objects
    return scene


# --- drawing ---------------------------------------------------------------------------------


def _shape_mask(shape: str, objects, rotation: float, size: int) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of all objects, drawn at 4x and box-downsampled."""
    big = size * SUPERSAMPLE
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    c, s_ = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    for cx, cy, r in objects:
        for poly, fill in polygons_for(shape):
            pts = [((cx + r * (c * x - s_ * y)) * SUPERSAMPLE, (cy + r * (s_ * x + c * y)) * SUPERSAMPLE) for x, y in poly]
            draw.polygon(pts, fill=255 * fill)
    return img


def _downsample(img: Image.Image) -> np.ndarray:
    return np.asarray(img.reduce(SUPERSAMPLE), dtype=np.float32) / 255.0


def _pattern(scene: Scene, size: int, fill: np.ndarray) -> np.ndarray:
    """Per-pixel fill colours (H, W, 3) in [0, 255]: the colour and a second tone in a pattern."""
    second = fill * 0.35 if luminance(fill) > 0.3 else fill + (255 - fill) * 0.55
    if scene.pattern == "solid" or not scene.objects:
        return np.broadcast_to(fill, (size, size, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    cx, cy, r = scene.objects[0]
    a = math.radians(scene.rotation)
    # pattern coordinates follow the object's rotation (pixels, object frame)
    u = (xx - cx) * math.cos(a) + (yy - cy) * math.sin(a)
    v = -(xx - cx) * math.sin(a) + (yy - cy) * math.cos(a)
    period = max(3.0, 4.0 * size / 32.0)
    if scene.pattern == "striped":
        t = (np.floor(u / (period / 2)) % 2).astype(np.float32)
    elif scene.pattern == "dotted":
        du, dv = (u % period) - period / 2, (v % period) - period / 2
        t = (du**2 + dv**2 < (0.33 * period) ** 2).astype(np.float32)
    elif scene.pattern == "checkered":
        t = ((np.floor(u / (period / 2)) + np.floor(v / (period / 2))) % 2).astype(np.float32)
    elif scene.pattern == "gradient":
        t = np.clip((v / max(r, 1.0) + 1) / 2, 0, 1)
    else:
        raise KeyError(f"unknown pattern {scene.pattern!r}")
    return fill[None, None, :] * (1 - t[..., None]) + second[None, None, :] * t[..., None]


def _muted_tone(rng: np.random.Generator, avoid_lum: float) -> np.ndarray:
    """A low-saturation background tone whose luminance keeps the object visible."""
    for _ in range(50):
        base = rng.uniform(60, 200)
        tint = rng.uniform(-25, 25, 3)
        tone = np.clip(base + tint, 0, 255)
        if abs(luminance(tone) - avoid_lum) > 0.28:
            return tone
    return np.full(3, 230.0 if avoid_lum < 0.5 else 30.0)


def _background(kind: str, size: int, rng: np.random.Generator, avoid_lum: float) -> np.ndarray:
    tone = _muted_tone(rng, avoid_lum)
    if kind == "plain":
        return np.broadcast_to(tone, (size, size, 3)).astype(np.float32).copy()
    if kind == "noisy":
        return np.clip(tone + rng.normal(0, 22, (size, size, 1)) + rng.normal(0, 8, (size, size, 3)), 0, 255)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == "gradient":
        a = rng.uniform(0, 2 * np.pi)
        t = (np.cos(a) * (xx - 0.5) + np.sin(a) * (yy - 0.5)) + 0.5
        tone2 = np.clip(tone + rng.uniform(-60, 60, 3) * np.sign(0.5 - luminance(tone)), 0, 255)
        return tone[None, None] * (1 - t[..., None]) + tone2[None, None] * t[..., None]
    if kind == "textured":
        field_ = np.zeros((size, size), np.float32)
        for _ in range(4):
            f = rng.uniform(2, 6)
            a = rng.uniform(0, 2 * np.pi)
            field_ += np.sin(2 * np.pi * f * (np.cos(a) * xx + np.sin(a) * yy) + rng.uniform(0, 2 * np.pi))
        return np.clip(tone[None, None] + 14 * field_[..., None], 0, 255)
    raise KeyError(f"unknown background {kind!r}")


def render(scene: Scene, rng: np.random.Generator, image_size: int = 32) -> np.ndarray:
    """Draw ``scene`` (already laid out) as a uint8 ``(H, W, 3)`` image."""
    fill = np.asarray(scene.rgb if scene.rgb is not None else COLOURS[scene.colour], np.float32)
    if scene.rgb is None:
        fill = np.clip(fill + rng.uniform(-12, 12, 3), 0, 255)
    lum = luminance(fill)
    mask_img = _shape_mask(scene.shape, scene.objects, scene.rotation, image_size)
    alpha = _downsample(mask_img)[..., None]
    fg = _pattern(scene, image_size, fill)

    if scene.style in ("sketch", "pencil"):
        # line drawing on paper: only the outline, in the object's colour (pencil: mostly grey)
        k = max(3, 2 * round(0.9 * SUPERSAMPLE * image_size / 32) + 1)
        inner = _downsample(mask_img.filter(ImageFilter.MinFilter(k)))[..., None]
        edge = np.clip(alpha - inner, 0, 1)
        paper = np.clip(rng.uniform(225, 250) + rng.normal(0, 4, (image_size, image_size, 1)), 0, 255)
        ink = fill if lum < 0.7 else fill * 0.6
        if scene.style == "pencil":
            ink = PENCIL_COLOUR * ink + (1 - PENCIL_COLOUR) * np.full(3, 90.0)
        img = paper * (1 - edge) + ink[None, None] * edge
        return np.clip(img, 0, 255).round().astype(np.uint8)

    bg = _background(scene.background, image_size, rng, lum)
    if scene.style == "shaded":
        # soft light from the top left and a drop shadow
        yy, xx = np.mgrid[0:image_size, 0:image_size].astype(np.float32) / image_size
        fg = np.clip(fg * (1.25 - 0.5 * ((xx + yy) / 2))[..., None], 0, 255)
        shift = max(1, image_size // 16)
        shadow = np.roll(np.roll(alpha, shift, 0), shift, 1)
        bg = bg * (1 - 0.45 * shadow)
    img = bg * (1 - alpha) + fg * alpha

    if scene.style == "cartoon":
        k = max(3, 2 * round(0.6 * SUPERSAMPLE * image_size / 32) + 1)
        outer = _downsample(mask_img.filter(ImageFilter.MaxFilter(k)))[..., None]
        line = np.clip(outer - alpha, 0, 1)
        img = img * (1 - line) + 15 * line
        img = np.round(img / 64) * 64 + 16  # posterised colours
    elif scene.style == "sensor":
        gain = rng.uniform(0.8, 1.2)
        img = img * gain + rng.normal(0, 28, img.shape)
        img = img + rng.normal(0, 10, (1, 1, 3))
    return np.clip(img, 0, 255).round().astype(np.uint8)


# --- captions --------------------------------------------------------------------------------


def caption(scene: Scene, keep: dict | None = None) -> str:
    """An English caption of the scene; ``keep`` selects which factors are mentioned.

    ``keep`` maps factor → bool for: shape, colour, pattern, size, count, background, style;
    ``say_one`` writes "one circle" instead of "a circle" (captions that count).
    Without a shape the noun is "object(s)". Example:
    "a photo of two small red striped stars on a noisy background."
    """
    keep = keep or {}
    k = lambda f: keep.get(f, True)  # noqa: E731
    prefix = STYLE_PREFIX[scene.style] if k("style") else "a photo of"
    n = scene.count
    noun = (scene.shape if n == 1 else plural(scene.shape)) if k("shape") else ("object" if n == 1 else "objects")
    words = []
    if k("size"):
        words.append(scene.size)
    if k("colour"):
        words.append(scene.colour)
    if k("pattern"):
        words.append(scene.pattern)
    words.append(noun)
    if n == 1 and k("count") and keep.get("say_one", False):
        head = f"{prefix} one "
    elif n == 1 or not k("count"):
        art = "an" if words[0][0] in "aeiou" else "a"
        head = f"{prefix} {art} " if n == 1 else f"{prefix} "
    else:
        head = f"{prefix} {COUNT_WORDS[n]} "
    text = head + " ".join(words)
    if k("background") and scene.style not in ("sketch", "pencil"):
        text += f" on a {scene.background} background"
    return text + "."
