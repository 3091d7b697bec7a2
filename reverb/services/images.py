"""Image checks and re-encoding (Pillow), run in a worker thread by the media service.

Every image is checked from its header first (dimensions, frame count, and the memory its
decoded pixels would take), so a decompression bomb is refused before any pixel is decoded.
Then it is decoded once, into its thumbnail or avatar: at a reduced size where the format
allows it (JPEG), and shrunk without full-size copies; every frame is decoded, so a truncated
or disguised file is refused too. Re-encoded output is built from pixels alone: no EXIF, ICC,
XMP or comments survive.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageMode, UnidentifiedImageError

from reverb.errors import ErrorCode, ReverbError

RASTER = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
FORMATS = {**RASTER, "MPO": "image/jpeg"}  # MPO: a multi-picture JPEG, served as a JPEG
THUMBNAIL_SIDE = 320
AVATAR_SIDE = 512
EXIF_ORIENTATION = 0x0112
QUARTER_TURNS = frozenset({5, 6, 7, 8})  # orientations that swap width and height
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# An animation is decoded frame by frame; bound the work: frames, and pixels over all frames.
MAX_FRAMES = 300
MAX_FRAME_PIXELS_FACTOR = 4  # all frames together: at most 4x the single-image pixel limit
# Frames after an animation's first decode to RGB(A), and the frame before is kept to draw
# the next one on: two 4-byte pixels each.
ANIMATION_BYTES_PER_PIXEL = 8
# The first, cheap shrink (box average or nearest pixel) stops at this many times the output
# size; the good filter takes it from there. 3x leaves no visible aliasing (Pillow's own
# `reducing_gap` advice is 2 to 3) and holds a ninth of a 1:1 copy.
REDUCING_GAP = 3
# Modes that resize straight from the decoded pixels. Others would be converted at full size
# first (a palette to RGBA, alpha premultiplied), so they are cut down by nearest pixel.
_SMOOTH = frozenset({"L", "RGB", "CMYK"})


@dataclass(frozen=True, slots=True)
class ImageInfo:
    content_type: str
    width: int
    height: int


def _refuse(detail: str, status: int = 422) -> ReverbError:
    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE if status == 415 else ErrorCode.VALIDATION_ERROR
    return ReverbError(
        code, detail, status, errors=[{"loc": ["body", "file"], "msg": detail, "type": code.value}]
    )


def bytes_per_pixel(mode: str) -> int:
    """What one pixel of `mode` takes in memory once decoded. Pillow stores 2 to 4 bands of
    8 bits in 4 bytes (RGB is padded), and one 8-bit band (or a bit) in a byte."""
    m = ImageMode.getmode(mode)
    per_band = int(m.typestr[2:])
    bands = len(m.bands)
    return 4 if per_band == 1 and bands > 1 else bands * per_band


def decoded_bytes(mode: str, width: int, height: int, frames: int = 1) -> int:
    per_pixel = bytes_per_pixel(mode)
    if frames > 1:
        per_pixel = max(per_pixel, ANIMATION_BYTES_PER_PIXEL)
    return width * height * per_pixel


def inspect(
    path: Path,
    *,
    max_pixels: int,
    max_decoded_bytes: int,
    claimed_image: bool,
    max_side: int | None = None,
) -> ImageInfo | None:
    """The image's type and size from its header, or None when the file is to be kept as a
    plain file. Nothing is decoded here.

    A PNG, JPEG, WebP or GIF is always checked: 422 when it is too large (pixels, sides, or
    the memory its decoded pixels would take). Anything else is a plain file, unless the
    client called it an image: then 415."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _refuse("the image has too many pixels") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            if claimed_image:
                raise _refuse("the file is not a decodable image", 415) from None
            return None
        with img:
            if img.format not in FORMATS:
                # Text that happens to look like, say, a PPM header is still just text.
                if claimed_image:
                    raise _refuse("images must be PNG, JPEG, WebP or GIF", 415)
                return None
            width, height = img.size
            try:
                frames = int(getattr(img, "n_frames", 1))
            except (OSError, ValueError, SyntaxError, EOFError):
                raise _refuse("the image cannot be decoded") from None
            if width * height > max_pixels or (max_side and max(width, height) > max_side):
                raise _refuse("the image is too large")
            if (
                frames > MAX_FRAMES
                or frames * width * height > max_pixels * MAX_FRAME_PIXELS_FACTOR
            ):
                raise _refuse("the animation has too many frames")
            need = decoded_bytes(img.mode, width, height, frames)
            if need > max_decoded_bytes:
                raise _refuse(
                    f"the image would take {need} bytes to decode ({width}x{height}, "
                    f"{img.mode}); the limit is {max_decoded_bytes}"
                )
            # A PNG's EXIF may follow its pixels (Pillow would decode them to find it): its
            # orientation is applied when the thumbnail is made (see `write_thumbnail`).
            if img.format != "PNG" and img.getexif().get(EXIF_ORIENTATION) in QUARTER_TURNS:
                width, height = height, width  # as shown (and as the thumbnail is): upright
            return ImageInfo(FORMATS[img.format], width, height)


def write_thumbnail(source: Path, dest: Path) -> tuple[int, int]:
    """At most 320x320, WebP. Decodes every frame (422 if one does not decode). Returns the
    image's size as shown (upright)."""
    return _render(source, dest, THUMBNAIL_SIDE, square=False, quality=80)


def write_avatar(source: Path, dest: Path) -> tuple[int, int]:
    """Centre-crop to a square, at most 512x512, WebP."""
    return _render(source, dest, AVATAR_SIDE, square=True, quality=85)


def _render(source: Path, dest: Path, side: int, *, square: bool, quality: int) -> tuple[int, int]:
    with Image.open(source) as img:
        width, height = img.size
        frames = int(getattr(img, "n_frames", 1))
        if frames == 1:
            # JPEG: decode at 1/2, 1/4 or 1/8 scale, still at least `side` each way; no-op for
            # other formats. Not for a multi-picture JPEG: its other frames would then not
            # decode at their own size.
            img.draft(None, (side, side))
        try:
            small = _shrink(img, side, square=square)
            orientation = img.getexif().get(EXIF_ORIENTATION)  # decoded now: nothing to read
            for frame in range(1, frames):  # every frame must decode, not just the one shown
                img.seek(frame)
                img.load()
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
            raise _refuse("the image cannot be decoded") from None
    if orientation in QUARTER_TURNS:
        width, height = height, width
    method = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    if method is not None:
        small = small.transpose(method)
    if square:
        if small.width > side:
            small = small.resize((side, side), Image.Resampling.LANCZOS)
    else:
        small.thumbnail((side, side))
    small.save(dest, "WEBP", quality=quality)
    return width, height


def _shrink(img: Image.Image, side: int, *, square: bool) -> Image.Image:
    """The (centre square of the) image's first frame, cut down to at most REDUCING_GAP times
    `side`, as a new image holding only RGB(A) pixels: no metadata can ride along. The
    decoded frame is the only full-size image: no converted or cropped copy of it is made."""
    img.load()
    w, h = img.size
    if square:
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        box = (left, top, left + s, top + s)
    else:
        box = (0, 0, w, h)
    bw, bh = box[2] - box[0], box[3] - box[1]
    scale = min(1.0, side * REDUCING_GAP / max(bw, bh))
    size = (max(1, round(bw * scale)), max(1, round(bh * scale)))
    resample = Image.Resampling.BOX if img.mode in _SMOOTH else Image.Resampling.NEAREST
    reduced = img.resize(size, resample, box=box)
    mode = "RGBA" if reduced.mode in ("RGBA", "LA", "P", "PA") else "RGB"
    converted = reduced.convert(mode)
    return Image.frombytes(mode, converted.size, converted.tobytes())
