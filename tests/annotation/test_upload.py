"""Uploading images: each bad file refused with its own message and nothing stored; good files of
the same batch kept; the same image twice points at the one already there."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image as PILImage

from annotation.images import clean_filename, ingest_image
from annotation.models import Image
from tests.factories import png_bytes

URL = reverse("annotation:upload_files")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png_header(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid PNG header claiming 400 MP, with a few bytes of pixel data: nothing big is allocated."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + _chunk(b"IEND", b""))


def many_frame_gif(frames: int = 3000) -> bytes:
    first = PILImage.new("P", (1, 1), 0)
    rest = [PILImage.new("P", (1, 1), i % 2) for i in range(1, frames)]
    out = io.BytesIO()
    first.save(out, "GIF", save_all=True, append_images=rest, duration=10, palette=bytes([0, 0, 0, 255, 255, 255]))
    return out.getvalue()


BAD_FILES = {
    "truncated.png": (lambda: png_bytes(width=300, height=200)[:-40], "damaged or truncated"),
    "notes.jpg": (lambda: "这不是图片 just text\n".encode() * 20, "not an image"),
    "logo.svg": (lambda: b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
                 "SVG and HTML files are not accepted"),
    "page.png": (lambda: b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>",
                 "SVG and HTML files are not accepted"),
    "empty.png": (lambda: b"", "The file is empty (0 bytes)."),
    "huge.png": (huge_png_header, "20,000 × 20,000 pixels (400 MP), over the limit of 50 MP"),
    "frames.gif": (lambda: many_frame_gif(3000), "3,000 frames, over the limit of 1,000"),
}


@pytest.fixture
def cora_client(client, curator):
    client.force_login(curator)
    return client


@pytest.mark.parametrize("name", BAD_FILES)
def test_it_rejects_each_bad_file_with_its_own_message_and_stores_nothing(cora_client, media_files, name):
    make, message = BAD_FILES[name]
    before = media_files()
    response = cora_client.post(URL, {"files": [SimpleUploadedFile(name, make())]}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "upload-row rejected" in html and message in html and name in html
    assert not Image.objects.exists()
    assert media_files() == before


def test_it_rejects_a_file_over_the_size_limit_before_reading_it(cora_client, media_files, settings):
    settings.UPLOAD_MAX_BYTES = 1_000
    before = media_files()
    big = png_bytes(seed=3) + b"\x00" * (3_100 - len(png_bytes(seed=3)))
    response = cora_client.post(URL, {"files": [SimpleUploadedFile("big.png", big)]}, headers={"HX-Request": "true"})
    assert "The file is 3.1 KB, over the limit of 1.0 KB." in response.content.decode()
    assert not Image.objects.exists() and media_files() == before


def test_it_keeps_the_good_files_of_a_batch_and_reports_each_bad_one(cora_client):
    files = [SimpleUploadedFile("one.png", png_bytes(seed=1)), SimpleUploadedFile("bad.jpg", b"text"),
             SimpleUploadedFile("two.png", png_bytes(seed=2)), SimpleUploadedFile("empty.gif", b"")]
    response = cora_client.post(URL, {"files": files, "tags": "meme, OCR", "source": "微博"})
    html = response.content.decode()
    assert html.count("upload-row created") == 2 and html.count("upload-row rejected") == 2
    assert "<h1>" in html  # the plain form gets the whole page back
    assert sorted(Image.objects.values_list("original_name", flat=True)) == ["one.png", "two.png"]
    assert sorted(Image.objects.first().tags.values_list("name", flat=True)) == ["meme", "ocr"]
    assert set(Image.objects.values_list("source", flat=True)) == {"微博"}


def test_it_says_an_image_is_already_in_the_library(cora_client):
    cora_client.post(URL, {"files": [SimpleUploadedFile("a.png", png_bytes(seed=5))]})
    response = cora_client.post(URL, {"files": [SimpleUploadedFile("again.png", png_bytes(seed=5))]},
                                headers={"HX-Request": "true"})
    assert "upload-row duplicate" in response.content.decode()
    assert "Already in the library" in response.content.decode()
    assert Image.objects.count() == 1


def test_it_accepts_a_name_with_path_separators_and_control_characters_cleaned(cora_client):
    response = cora_client.post(URL, {"files": [SimpleUploadedFile("..\\..\\win\\ev\x07il\x01.png", png_bytes(seed=8))]})
    assert response.status_code == 200
    assert Image.objects.get().original_name == "evil.png"
    result = ingest_image(png_bytes(seed=9), filename="../../etc/pa\x00ss\nwd\u202e.png")
    assert result.image.original_name == "passwd.png"
    assert clean_filename("/") == "image" and clean_filename("...hidden.png") == "hidden.png"


def test_it_applies_exif_orientation_and_strips_metadata(db):
    image = PILImage.new("RGB", (40, 20), (200, 10, 10))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    exif[0x010F] = "SecretCam"
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    stored = ingest_image(out.getvalue(), filename="photo.jpg").image
    assert (stored.width, stored.height) == (20, 40)
    with PILImage.open(stored.file.path) as reopened:
        assert not reopened.getexif() and b"SecretCam" not in stored.file.open("rb").read()


def test_it_takes_the_first_frame_of_a_small_gif_as_png(cora_client):
    cora_client.post(URL, {"files": [SimpleUploadedFile("anim.gif", many_frame_gif(5))]})
    assert Image.objects.get().format == "PNG"


def test_the_upload_page_is_for_curators(client, annotator, curator):
    client.force_login(annotator)
    assert client.get(reverse("annotation:upload")).status_code == 403
    assert client.post(URL, {"files": [SimpleUploadedFile("a.png", png_bytes())]}).status_code == 403
    assert not Image.objects.exists()
    client.force_login(curator)
    page = client.get(reverse("annotation:upload")).content.decode()
    assert 'id="dropzone"' in page and 'name="files"' in page and "multiple" in page and "csrfmiddlewaretoken" in page


def test_it_asks_for_a_file_when_none_was_sent(cora_client):
    assert "Choose at least one image" in cora_client.post(URL, {}).content.decode()
