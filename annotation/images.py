"""Turning untrusted bytes into a stored Image: checked, decoded, re-encoded, content-addressed.

Every check raises ``ImageRejected`` with a message a curator understands; nothing is written to
disk or the database until the image has passed all of them.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import unicodedata
import warnings
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "MPO"}
THUMBNAIL_SIZE = (320, 320)


class ImageRejected(ValueError):
    pass


@dataclass
class IngestResult:
    image: object  # annotation.models.Image
    created: bool


def clean_filename(name: str) -> str:
    """Keep only the last path component, without control characters, at a sane length."""
    name = re.split(r"[\\/]", name or "")[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip().lstrip(".")
    return name[:200] or "image"


def _decode(data: bytes, *, max_pixels: int, max_frames: int) -> tuple[PILImage.Image, str]:
    if not data:
        raise ImageRejected("The file is empty (0 bytes).")
    head = data[:512].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml", b"<!doctype", b"<html")) or b"<svg" in head:
        raise ImageRejected("SVG and HTML files are not accepted: upload a JPEG, PNG, WebP, GIF or BMP image.")
    with warnings.catch_warnings():
        # Pillow's own bomb check warns at half our limit and raises at twice: we want one clear limit.
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        previous = PILImage.MAX_IMAGE_PIXELS
        PILImage.MAX_IMAGE_PIXELS = None
        try:
            try:
                probe = PILImage.open(io.BytesIO(data))
            except UnidentifiedImageError:
                raise ImageRejected("This is not an image Pillow can read (JPEG, PNG, WebP, GIF or BMP).") from None
            fmt = probe.format or ""
            if fmt not in ALLOWED_FORMATS:
                raise ImageRejected(f"Format {fmt or 'unknown'} is not accepted: use JPEG, PNG, WebP, GIF or BMP.")
            width, height = probe.size
            if width * height > max_pixels:
                raise ImageRejected(
                    f"The image is {width:,} × {height:,} pixels ({width * height / 1e6:.0f} MP), over the limit of "
                    f"{max_pixels / 1e6:.0f} MP."
                )
            frames = getattr(probe, "n_frames", 1)
            if frames > max_frames:
                raise ImageRejected(f"The animation has {frames:,} frames, over the limit of {max_frames:,}.")
            try:
                probe.verify()
                image = PILImage.open(io.BytesIO(data))
                image.seek(0)  # GIF and other animations: the first frame
                image.load()  # a full decode catches truncated data that verify() lets through
            except ImageRejected:
                raise
            except Exception as exc:
                raise ImageRejected(f"The image data is damaged or truncated ({exc}).") from None
        finally:
            PILImage.MAX_IMAGE_PIXELS = previous
    return image, fmt


def _reencode(image: PILImage.Image, fmt: str) -> tuple[bytes, str]:
    """Apply EXIF orientation, drop all metadata, and write a fresh file."""
    image = ImageOps.exif_transpose(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    out = io.BytesIO()
    if fmt in ("JPEG", "MPO") and not has_alpha:
        image.convert("RGB").save(out, "JPEG", quality=92, optimize=True)
        return out.getvalue(), "JPEG"
    if fmt == "WEBP":
        image.convert("RGBA" if has_alpha else "RGB").save(out, "WEBP", quality=92)
        return out.getvalue(), "WEBP"
    image.convert("RGBA" if has_alpha else "RGB").save(out, "PNG", optimize=False)
    return out.getvalue(), "PNG"


def ingest_image(data: bytes, *, filename: str = "", user=None, source: str = "", licence: str = "",
                 tags: list[str] | None = None) -> IngestResult:
    """Check and store an uploaded image; the same image twice returns the existing row."""
    from .models import Image, Tag

    if len(data) > settings.UPLOAD_MAX_BYTES:
        raise ImageRejected(
            f"The file is {len(data) / 1e6:.1f} MB, over the limit of {settings.UPLOAD_MAX_BYTES / 1e6:.0f} MB."
        )
    image, fmt = _decode(data, max_pixels=settings.UPLOAD_MAX_PIXELS, max_frames=settings.UPLOAD_MAX_FRAMES)
    encoded, stored_format = _reencode(image, fmt)
    sha256 = hashlib.sha256(encoded).hexdigest()
    existing = Image.objects.filter(sha256=sha256).first()
    if existing is not None:
        return IngestResult(existing, False)
    width, height = ImageOps.exif_transpose(image).size
    row = Image(sha256=sha256, width=width, height=height, format=stored_format,
                original_name=clean_filename(filename), source=source, licence=licence, created_by=user)
    try:
        with transaction.atomic():
            row.file.save("upload", ContentFile(encoded), save=False)
            row.save()
            for name in tags or []:
                row.tags.add(Tag.objects.get_or_create(name=name)[0])
    except IntegrityError:
        # Someone stored the same bytes a moment ago: theirs is the row; our file is the same path.
        return IngestResult(Image.objects.get(sha256=sha256), False)
    except Exception:
        if row.file and row.file.name and not Image.objects.filter(file=row.file.name).exists():
            row.file.storage.delete(row.file.name)
        raise
    return IngestResult(row, True)


def make_thumbnail(path: str) -> bytes:
    with PILImage.open(path) as image:
        image.thumbnail(THUMBNAIL_SIZE)
        out = io.BytesIO()
        image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB").save(out, "WEBP", quality=80)
        return out.getvalue()


def thumbnail_name(sha256: str) -> str:
    return os.path.join("thumbnails", sha256[:2], f"{sha256}.webp")
