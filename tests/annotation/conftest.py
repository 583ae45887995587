from __future__ import annotations

import pytest

from tests.annotation.standins import METADATA, make_standin_images


@pytest.fixture(scope="session")
def released_metadata():
    if not METADATA.exists():
        pytest.skip(f"the released AlignMMBench file is absent ({METADATA}); it ships in ../shared/datasets/alignmmbench")
    return METADATA


@pytest.fixture(scope="session")
def standin_images(released_metadata, tmp_path_factory):
    """A folder with one stand-in image at every image_path of the released file."""
    root = tmp_path_factory.mktemp("alignmmbench")
    make_standin_images(root, metadata=released_metadata)
    return root


@pytest.fixture
def media_files(settings):
    """The files under MEDIA_ROOT now, to check that a rejected upload left nothing behind."""
    def snapshot() -> set[str]:
        return {str(p.relative_to(settings.MEDIA_ROOT)) for p in settings.MEDIA_ROOT.rglob("*") if p.is_file()}

    return snapshot
