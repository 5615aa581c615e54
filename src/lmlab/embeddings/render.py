"""Glyph renderer: a token's text -> an RxR binary bitmap, drawn as the frozen-glyph paper does.

Each character gets an RxR cell (default 32x32); a multi-character token is drawn one cell per
character and the strip is resized to RxR (bilinear); an optional fixed augmentation (small
rotation, shift, noise; the same for a token on every run) is applied; then pixels >= 128 are 1.

Characters are drawn with the first font of a chain that has a visible glyph for them:
fonts named by the user, then GNU Unifont (Debian `fonts-unifont`) when installed, then the
DejaVu/STIX fonts shipped inside matplotlib. A character no font draws (and blank characters
such as spaces, which every font draws empty) gets a deterministic "hex box": its code point
in a built-in 3x5 pixel hexadecimal font inside a frame, so distinct code points never share
a picture. Each character is drawn once per renderer, whatever the number of tokens using it.
"""
from __future__ import annotations

import hashlib
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Bumped whenever a picture changes (v3: all 256 byte-fallback boxes distinct); caches and reports carry it.
RENDERER_VERSION = "glyph-v3"
UNIFONT_PATHS = (
    "/usr/share/fonts/opentype/unifont/unifont.otf",
    "/usr/share/fonts/opentype/unifont/unifont_upper.otf",
    "/usr/share/fonts/opentype/unifont/unifont_csur.otf",
    "/usr/share/fonts/truetype/unifont/unifont.ttf",
    "/usr/share/fonts/truetype/unifont/unifont_upper.ttf",
)
MPL_FONTS = ("DejaVuSans.ttf", "DejaVuSansMono.ttf", "STIXGeneral.ttf", "DejaVuSerif.ttf")
FALLBACK = "hexbox"      # a character no font draws
BYTE_BOX = "bytebox"     # a byte-fallback token (not a character)
BYTE_TOKEN = re.compile(r"<0x([0-9A-F]{2})>")

# 3x5 pixel hexadecimal digits, rows top to bottom, 3 bits per row (MSB = left pixel).
_HEX_DIGITS = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7),
    "4": (5, 5, 7, 1, 1), "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 2, 2),
    "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7), "A": (2, 5, 7, 5, 5), "B": (6, 5, 6, 5, 6),
    "C": (3, 4, 4, 4, 3), "D": (6, 5, 5, 5, 6), "E": (7, 4, 6, 4, 7), "F": (7, 4, 6, 4, 4),
}


def default_font_chain(extra: str | list[str] = "") -> list[str]:
    """Font files in the order they are tried: user fonts, Unifont, matplotlib's fonts."""
    if isinstance(extra, str):
        extra = [p for p in extra.split(os.pathsep) if p]
    chain = [str(Path(p).expanduser()) for p in extra]
    chain += [p for p in UNIFONT_PATHS if os.path.isfile(p)]
    try:
        import matplotlib

        ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        chain += [str(ttf / name) for name in MPL_FONTS if (ttf / name).is_file()]
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        pass
    return chain


def hex_box(text: str, size: int) -> np.ndarray:
    """A framed picture of hex digits (a code point, or a byte), deterministic for any size."""
    grid = np.zeros((16, 16), dtype=np.uint8)
    grid[0, :] = grid[-1, :] = grid[:, 0] = grid[:, -1] = 1
    rows = [text[:3], text[3:6]] if len(text) > 3 else [text]
    first = 2 if len(text) > 2 else 4  # a byte's two digits sit inside its inner frame (columns 3-12)
    for r, row in enumerate(rows):
        top = 2 + r * 7 if len(rows) == 2 else 5
        for c, digit in enumerate(row):
            left = first + c * 4
            for y, bits in enumerate(_HEX_DIGITS[digit]):
                for x in range(3):
                    grid[top + y, left + x] = (bits >> (2 - x)) & 1
    if len(text) <= 2:  # bytes get a second inner frame so they never look like a code point
        grid[2, 2:14] = grid[13, 2:14] = grid[2:14, 2] = grid[2:14, 13] = 1
    from PIL import Image

    img = Image.fromarray(grid * 255).resize((size, size), Image.NEAREST)
    return np.asarray(img, dtype=np.uint8)


@dataclass
class Coverage:
    """Which font drew each distinct character, and how many tokens needed the fallback."""
    chars_by_font: dict = field(default_factory=dict)
    tokens_with_fallback: int = 0
    tokens: int = 0
    duplicate_rows: int = 0          # tokens whose picture another token already has
    duplicate_single_chars: int = 0  # ... of which all alike are single characters (homoglyphs)

    def as_dict(self) -> dict:
        return {"chars_by_font": dict(self.chars_by_font), "tokens": self.tokens,
                "tokens_with_fallback": self.tokens_with_fallback, "duplicate_rows": self.duplicate_rows,
                "duplicate_single_chars": self.duplicate_single_chars}


class GlyphRenderer:
    def __init__(self, size: int = 32, fonts: list[str] | None = None, augment: float = 0.0, seed: int = 0):
        from PIL import ImageFont

        self.size = size
        self.augment = augment
        self.seed = seed
        self.font_paths = [p for p in (fonts if fonts is not None else default_font_chain()) if os.path.isfile(p)]
        self._fonts = []
        for path in self.font_paths:
            from matplotlib.ft2font import FT2Font

            charmap = set(FT2Font(path).get_charmap())
            font = ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)
            ascent, descent = font.getmetrics()
            if ascent + descent > size:  # shrink fonts whose line is taller than the cell
                font = ImageFont.truetype(path, max(1, size * size // (ascent + descent)),
                                          layout_engine=ImageFont.Layout.BASIC)
                ascent, descent = font.getmetrics()
            self._fonts.append((Path(path).name, charmap, font, (size - ascent - descent) // 2))
        self._cells: dict[str, tuple[np.ndarray, str]] = {}

    def identity(self) -> str:
        """What the pictures depend on: renderer version, font files (name + size), parameters."""
        h = hashlib.sha256(f"{RENDERER_VERSION}|{self.size}|{self.augment}|{self.seed}".encode())
        for path in self.font_paths:
            h.update(f"|{Path(path).name}:{os.path.getsize(path)}".encode())
        return h.hexdigest()[:16]

    def cell(self, ch: str) -> tuple[np.ndarray, str]:
        """An RxR uint8 (0-255) picture of one character and the name of the font that drew it."""
        hit = self._cells.get(ch)
        if hit is not None:
            return hit
        from PIL import Image, ImageDraw

        cp = ord(ch)
        result = None
        if not 0xD800 <= cp <= 0xDFFF:
            for name, charmap, font, top in self._fonts:
                if cp not in charmap:
                    continue
                img = Image.new("L", (self.size, self.size), 0)
                left = (self.size - font.getlength(ch)) / 2
                ink_l, _, ink_r, _ = font.getbbox(ch)
                if left + ink_l < 0 or left + ink_r > self.size:  # combining marks hang left of
                    left = (self.size - (ink_r - ink_l)) / 2 - ink_l  # their origin: centre the ink
                ImageDraw.Draw(img).text((left, top), ch, font=font, fill=255)
                pixels = np.asarray(img, dtype=np.uint8)
                if pixels.max() >= 128:
                    result = (pixels, name)
                    break
        if result is None:
            result = (hex_box(f"{cp:06X}", self.size), FALLBACK)
        self._cells[ch] = result
        return result

    def draw(self, text: str) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """Grey RxR picture of a token's text, before binarising; and (char, font) per char.

        A byte-fallback token ("<0xE2>") is drawn as a double-framed box of its two hex digits.
        """
        from PIL import Image

        byte = BYTE_TOKEN.fullmatch(text)
        if byte or not text:
            return hex_box(byte.group(1) if byte else "", self.size), [(text, BYTE_BOX)]
        cells = [self.cell(ch) for ch in text]
        used = [(ch, name) for ch, (_, name) in zip(text, cells)]
        if len(text) == 1 and self.augment <= 0:
            return cells[0][0], used
        img = Image.fromarray(np.concatenate([c for c, _ in cells], axis=1))
        if len(text) > 1:
            img = img.resize((self.size, self.size), Image.BILINEAR)
        if self.augment > 0:
            img = self._augment(img, text)
        return np.asarray(img, dtype=np.uint8), used

    def _augment(self, img, text: str):
        """Small rotation, shift and noise, seeded by the token's text: fixed across runs."""
        from PIL import Image

        key = zlib.crc32(text.encode("utf-8", "surrogatepass")) ^ self.seed
        rng = np.random.default_rng(key)
        angle = rng.uniform(-5.0, 5.0) * self.augment
        dx, dy = (int(v) for v in rng.integers(-1, 2, size=2) * (1 if self.augment >= 0.5 else 0))
        img = img.rotate(angle, resample=Image.BILINEAR, translate=(dx, dy))
        noisy = np.asarray(img, dtype=np.float32) + rng.normal(0.0, 16.0 * self.augment, (self.size, self.size))
        return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))

    def bits(self, texts: list[str]) -> tuple[np.ndarray, Coverage]:
        """Binary pictures [N, R*R] (uint8 0/1, row-major) for many tokens, with coverage."""
        out = np.empty((len(texts), self.size * self.size), dtype=np.uint8)
        fonts_of_char: dict[str, str] = {}
        cov = Coverage(tokens=len(texts))
        for i, text in enumerate(texts):
            grey, used = self.draw(text)
            out[i] = (grey.reshape(-1) >= 128)
            if any(name == FALLBACK for _, name in used):
                cov.tokens_with_fallback += 1
            fonts_of_char.update(used)
        for name in fonts_of_char.values():
            cov.chars_by_font[name] = cov.chars_by_font.get(name, 0) + 1
        groups: dict[bytes, list[str]] = {}
        for text, row in zip(texts, np.packbits(out, axis=1)):
            groups.setdefault(row.tobytes(), []).append(text)
        cov.duplicate_rows = len(texts) - len(groups)
        cov.duplicate_single_chars = sum(len(g) - 1 for g in groups.values() if all(len(t) == 1 for t in g))
        return out, cov
