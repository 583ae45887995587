"""Turning untrusted bytes into a stored Image: checked, decoded, re-encoded, content-addressed.

Every check raises ``ImageRejected`` with a message a curator understands; nothing is written to
disk or the database until the image has passed all of them.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
import unicodedata
import warnings
from dataclasses import dataclass, field

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "MPO"}
THUMBNAIL_SIZE = (320, 320)


# Pillow's bomb guard is a process-wide setting; we swap it (and the warning filters) only around
# the cheap header parse, under a lock, so imports can decode in parallel threads safely.
_OPEN_LOCK = threading.Lock()


class ImageRejected(ValueError):
    pass


@dataclass
class IngestResult:
    image: object  # annotation.models.Image
    created: bool


@dataclass
class PreparedImage:
    """A checked, re-encoded image that is not stored yet: pure data, safe to make in a worker thread."""

    encoded: bytes = field(repr=False)
    sha256: str
    width: int
    height: int
    format: str


def _printable(text: str) -> str:
    return "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")


def clean_filename(name: str) -> str:
    """Keep only the last path component, without control characters, at a sane length."""
    name = re.split(r"[\\/]", name or "")[-1]
    name = _printable(name).strip().lstrip(".")
    return name[:200] or "image"


def clean_relative_path(path: str) -> str | None:
    """An import's ``image_path`` as a safe relative path (``images/000000783.jpg``), or None when it
    tries to leave its folder (absolute, ``..``) or is empty after cleaning."""
    parts = [_printable(part).strip() for part in re.split(r"[\\/]", path or "")]
    parts = [part for part in parts if part not in ("", ".")]
    if not parts or ".." in parts or re.match(r"^[A-Za-z]:", (path or "").strip()) or (path or "").strip()[:1] in "/\\":
        return None
    cleaned = "/".join(parts)
    return cleaned if len(cleaned) <= 250 else None


def _decode(data: bytes, *, max_pixels: int, max_frames: int) -> tuple[PILImage.Image, str]:
    if not data:
        raise ImageRejected("The file is empty (0 bytes).")
    head = data[:512].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml", b"<!doctype", b"<html")) or b"<svg" in head:
        raise ImageRejected("SVG and HTML files are not accepted: upload a JPEG, PNG, WebP, GIF or BMP image.")
    probe = _open(data)
    fmt = probe.format or ""
    if fmt not in ALLOWED_FORMATS:
        raise ImageRejected(f"Format {fmt or 'unknown'} is not accepted: use JPEG, PNG, WebP, GIF or BMP.")
    width, height = probe.size
    if width * height > max_pixels:
        raise ImageRejected(
            f"The image is {width:,} × {height:,} pixels ({width * height / 1e6:.0f} MP), over the limit of "
            f"{max_pixels / 1e6:.0f} MP."
        )
    try:
        frames = getattr(probe, "n_frames", 1)
    except Exception as exc:
        raise ImageRejected(f"The image data is damaged or truncated ({exc}).") from None
    if frames > max_frames:
        raise ImageRejected(f"The animation has {frames:,} frames, over the limit of {max_frames:,}.")
    try:
        probe.verify()
        image = _open(data)
        image.seek(0)  # GIF and other animations: the first frame
        image.load()  # a full decode catches truncated data that verify() lets through
    except ImageRejected:
        raise
    except Exception as exc:
        raise ImageRejected(f"The image data is damaged or truncated ({exc}).") from None
    return image, fmt


def _open(data: bytes) -> PILImage.Image:
    with _OPEN_LOCK, warnings.catch_warnings():
        # Pillow's own bomb check warns at half our limit and raises at twice: we want one clear limit,
        # checked by the caller from the header before any pixel is decoded.
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        previous = PILImage.MAX_IMAGE_PIXELS
        PILImage.MAX_IMAGE_PIXELS = None
        try:
            return PILImage.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise ImageRejected("This is not an image Pillow can read (JPEG, PNG, WebP, GIF or BMP).") from None
        except Exception as exc:
            raise ImageRejected(f"The image data is damaged or truncated ({exc}).") from None
        finally:
            PILImage.MAX_IMAGE_PIXELS = previous


def _reencode(image: PILImage.Image, fmt: str) -> tuple[bytes, str]:
    """Drop all metadata and write a fresh file (EXIF orientation is applied by the caller)."""
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


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} KB"


def check_size(size: int) -> None:
    """The cheap first check, done before a byte of the file is read into memory."""
    if size > settings.UPLOAD_MAX_BYTES:
        raise ImageRejected(
            f"The file is {_megabytes(size)}, over the limit of {_megabytes(settings.UPLOAD_MAX_BYTES)}."
        )


def prepare_image(data: bytes) -> PreparedImage:
    """Every check, EXIF orientation, metadata stripped, re-encoded, hashed. Stores nothing."""
    check_size(len(data))
    image, fmt = _decode(data, max_pixels=settings.UPLOAD_MAX_PIXELS, max_frames=settings.UPLOAD_MAX_FRAMES)
    try:
        image = ImageOps.exif_transpose(image)
        encoded, stored_format = _reencode(image, fmt)
    except Exception as exc:  # a damaged EXIF block or an odd mode: still the file's fault
        raise ImageRejected(f"The image could not be re-encoded ({exc}).") from None
    width, height = image.size
    return PreparedImage(encoded, hashlib.sha256(encoded).hexdigest(), width, height, stored_format)


def store_image(prepared: PreparedImage, *, filename: str = "", user=None, source: str = "", licence: str = "",
                tags: list[str] | None = None) -> IngestResult:
    """Store a prepared image by its content hash; the same image twice returns the existing row."""
    from .models import Image, Tag

    existing = Image.objects.filter(sha256=prepared.sha256).first()
    if existing is not None:
        return IngestResult(existing, False)
    row = Image(sha256=prepared.sha256, width=prepared.width, height=prepared.height, format=prepared.format,
                original_name=filename, source=source, licence=licence, created_by=user)
    try:
        with transaction.atomic():
            row.file.save("upload", ContentFile(prepared.encoded), save=False)
            row.save()
            for name in tags or []:
                row.tags.add(Tag.objects.get_or_create(name=name)[0])
    except IntegrityError:
        # Someone stored the same bytes a moment ago: theirs is the row; our file is the same path.
        return IngestResult(Image.objects.get(sha256=prepared.sha256), False)
    except Exception:
        if row.file and row.file.name and not Image.objects.filter(file=row.file.name).exists():
            row.file.storage.delete(row.file.name)
        raise
    return IngestResult(row, True)


def ingest_image(data: bytes, *, filename: str = "", user=None, source: str = "", licence: str = "",
                 tags: list[str] | None = None) -> IngestResult:
    """Check and store an uploaded image; the same image twice returns the existing row."""
    return store_image(prepare_image(data), filename=clean_filename(filename), user=user, source=source,
                       licence=licence, tags=tags)


def ingest_upload(upload, *, user=None, source: str = "", licence: str = "",
                  tags: list[str] | None = None) -> IngestResult:
    """An uploaded file (Django's UploadedFile): its size is checked before it is read."""
    check_size(upload.size or 0)
    return ingest_image(upload.read(), filename=upload.name or "", user=user, source=source, licence=licence,
                        tags=tags)


def make_thumbnail(path: str) -> bytes:
    with PILImage.open(path) as image:
        image.thumbnail(THUMBNAIL_SIZE)
        out = io.BytesIO()
        image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB").save(out, "WEBP", quality=80)
        return out.getvalue()


def thumbnail_name(sha256: str) -> str:
    return os.path.join("thumbnails", sha256[:2], f"{sha256}.webp")
