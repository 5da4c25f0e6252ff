"""Thumbnails with Pillow (blocking: the service runs these in a worker thread).

Pillow is imported on first use, not at start-up: an idle server does not carry it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

# The sizes the spec suggests servers pre-generate.
THUMBNAIL_SIZES: list[tuple[int, int, str]] = [
    (32, 32, "crop"), (96, 96, "crop"), (320, 240, "scale"), (640, 480, "scale"),
    (800, 600, "scale"),
]
THUMBNAILABLE = {"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp",
                 "image/apng", "image/tiff"}
MAX_FRAMES = 300


class NotAnImage(Exception):
    pass


class ImageTooLarge(Exception):
    pass


@dataclass
class Thumbnail:
    data: bytes
    content_type: str
    width: int
    height: int


def select_size(width: int, height: int, method: str) -> tuple[int, int, str]:
    """The smallest pre-generated size at least as big as asked, else the biggest one
    (as Synapse picks when dynamic thumbnails are off)."""
    if method == "crop":
        fits = [s for s in THUMBNAIL_SIZES if s[2] == "crop" and s[0] >= width and s[1] >= height]
        crops = [s for s in THUMBNAIL_SIZES if s[2] == "crop"]
        if fits:
            return min(fits, key=lambda s: s[0] * s[1])
        if width > 96 or height > 96:
            # Bigger than any crop size: a scaled one serves better than a tiny crop.
            method = "scale"
        else:
            return max(crops, key=lambda s: s[0] * s[1])
    scales = [s for s in THUMBNAIL_SIZES if s[2] == "scale"]
    fits = [s for s in scales if s[0] >= width or s[1] >= height]
    if fits:
        return min(fits, key=lambda s: s[0] * s[1])
    return max(scales, key=lambda s: s[0] * s[1])


def _open_checked(path: Path, max_pixels: int) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    try:
        # Image.open only reads the header: the size is known before anything is decoded.
        img = Image.open(path)
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(str(e)) from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise NotAnImage(str(e)) from e
    w, h = img.size
    frames = getattr(img, "n_frames", 1)
    if w <= 0 or h <= 0 or w * h > max_pixels or w * h * min(frames, MAX_FRAMES) > 8 * max_pixels:
        img.close()
        raise ImageTooLarge(f"{w}x{h} is too many pixels")
    return img


def check_image(path: Path, max_pixels: int) -> tuple[int, int]:
    """The image's size, or NotAnImage / ImageTooLarge, decoding nothing."""
    with _open_checked(path, max_pixels) as img:
        return img.size


def _target_size(src: tuple[int, int], width: int, height: int, method: str) -> tuple[int, int]:
    sw, sh = src
    if method == "scale":
        ratio = min(width / sw, height / sh, 1.0)  # never upscale
        return max(1, round(sw * ratio)), max(1, round(sh * ratio))
    return min(width, sw), min(height, sh)


def _resize(frame: Image.Image, size: tuple[int, int], method: str) -> Image.Image:
    from PIL import Image

    if frame.mode not in ("RGB", "RGBA"):
        frame = frame.convert("RGBA" if "transparency" in frame.info or "A" in frame.mode else "RGB")
    if method == "crop":
        # Cover the box keeping aspect, then cut the middle.
        sw, sh = frame.size
        scale = max(size[0] / sw, size[1] / sh)
        cw, ch = max(size[0], round(sw * scale)), max(size[1], round(sh * scale))
        frame = frame.resize((cw, ch), Image.Resampling.LANCZOS)
        left, top = (cw - size[0]) // 2, (ch - size[1]) // 2
        return frame.crop((left, top, left + size[0], top + size[1]))
    return frame.resize(size, Image.Resampling.LANCZOS)


def make_thumbnail(path: Path, width: int, height: int, method: str, animated: bool,
                   max_pixels: int) -> Thumbnail:
    from PIL import ImageSequence

    with _open_checked(path, max_pixels) as img:
        size = _target_size(img.size, width, height, method)
        out = io.BytesIO()
        if animated and getattr(img, "is_animated", False):
            frames, durations = [], []
            for i, frame in enumerate(ImageSequence.Iterator(img)):
                if i >= MAX_FRAMES:
                    break
                frames.append(_resize(frame.convert("RGBA"), size, method))
                durations.append(frame.info.get("duration", 100))
            frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:],
                           duration=durations, loop=0, quality=80)
            return Thumbnail(out.getvalue(), "image/webp", *size)
        img.seek(0)
        frame = _resize(img, size, method)
        if frame.mode == "RGBA" or img.format in ("PNG", "GIF"):
            frame.save(out, "PNG", optimize=True)
            ctype = "image/png"
        else:
            frame.save(out, "JPEG", quality=85)
            ctype = "image/jpeg"
        return Thumbnail(out.getvalue(), ctype, *size)
