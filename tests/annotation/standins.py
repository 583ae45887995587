"""Stand-in images for the released AlignMMBench file, whose real images ship separately: one
distinct JPEG at every image_path, sizes from 48 px to 5,000 px (the big ones few, to stay fast)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image as PILImage

ROOT = Path(__file__).resolve().parents[2]
METADATA = ROOT.parent / "shared" / "datasets" / "alignmmbench" / "metadata.jsonl"


def standin_size(index: int) -> tuple[int, int]:
    if index == 0:
        return 5000, 320  # the long edge at 5,000 px
    if index == 1:
        return 320, 5000
    if index == 2:
        return 2400, 1800
    if index % 100 == 3:
        return 1280, 960
    sizes = [(48, 48), (64, 96), (160, 120), (240, 180), (320, 240), (400, 300), (96, 64), (200, 400)]
    return sizes[index % len(sizes)]


def make_standin_images(root: Path, *, metadata: Path = METADATA) -> int:
    """Write one distinct image per image_path of ``metadata`` under ``root``; returns how many."""
    paths = sorted({json.loads(line)["image_path"] for line in metadata.read_text().splitlines() if line.strip()})
    for index, path in enumerate(paths):
        # Colours 23 apart in each channel: distinct even after JPEG re-encoding.
        colour = ((index % 11) * 23, (index // 11 % 11) * 23, (index // 121) * 23)
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        PILImage.new("RGB", standin_size(index), colour).save(target, "JPEG", quality=90)
    return len(paths)
