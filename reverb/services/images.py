"""Image checks and re-encoding (Pillow), run in a worker thread by the media service.

Every image is checked from its header first (dimensions, frame count), so a decompression
bomb is refused before any pixel is decoded; then it is decoded in full, so a truncated or
disguised file is refused too. Re-encoded output is built from pixels alone: no EXIF, ICC,
XMP or comments survive.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from reverb.errors import ErrorCode, ReverbError

RASTER = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
FORMATS = {**RASTER, "MPO": "image/jpeg"}  # MPO: a multi-picture JPEG, served as a JPEG
THUMBNAIL_SIDE = 320
AVATAR_SIDE = 512
EXIF_ORIENTATION = 0x0112
QUARTER_TURNS = frozenset({5, 6, 7, 8})  # orientations that swap width and height
# An animation is decoded frame by frame; bound the work: frames, and pixels over all frames.
MAX_FRAMES = 300
MAX_FRAME_PIXELS_FACTOR = 4  # all frames together: at most 4x the single-image pixel limit


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


def inspect(
    path: Path, *, max_pixels: int, claimed_image: bool, max_side: int | None = None
) -> ImageInfo | None:
    """The image's type and size, or None when the file is to be kept as a plain file.

    A PNG, JPEG, WebP or GIF is always checked: 422 when it is too large or does not decode in
    full. Anything else is a plain file, unless the client called it an image: then 415."""
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
            frames = int(getattr(img, "n_frames", 1))
            if width * height > max_pixels or (max_side and max(width, height) > max_side):
                raise _refuse("the image is too large")
            if (
                frames > MAX_FRAMES
                or frames * width * height > max_pixels * MAX_FRAME_PIXELS_FACTOR
            ):
                raise _refuse("the animation has too many frames")
            try:
                for frame in range(frames):
                    img.seek(frame)
                    img.load()
            except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
                raise _refuse("the image cannot be decoded") from None
            img.seek(0)
            if img.getexif().get(EXIF_ORIENTATION) in QUARTER_TURNS:
                width, height = height, width  # as shown (and as the thumbnail is): upright
            return ImageInfo(FORMATS[img.format], width, height)


def _pixels_only(img: Image.Image) -> Image.Image:
    """A new image holding only the pixels (upright): no metadata can ride along."""
    img.seek(0)
    upright = ImageOps.exif_transpose(img)
    mode = "RGBA" if upright.mode in ("RGBA", "LA", "P", "PA") else "RGB"
    converted = upright.convert(mode)
    return Image.frombytes(mode, converted.size, converted.tobytes())


def write_thumbnail(source: Path, dest: Path) -> None:
    with Image.open(source) as img:
        clean = _pixels_only(img)
    clean.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    clean.save(dest, "WEBP", quality=80)


def write_avatar(source: Path, dest: Path) -> None:
    """Centre-crop to a square, at most 512x512, WebP."""
    with Image.open(source) as img:
        clean = _pixels_only(img)
    side = min(clean.size)
    left, top = (clean.width - side) // 2, (clean.height - side) // 2
    square = clean.crop((left, top, left + side, top + side))
    if side > AVATAR_SIDE:
        square = square.resize((AVATAR_SIDE, AVATAR_SIDE), Image.Resampling.LANCZOS)
    square.save(dest, "WEBP", quality=85)
