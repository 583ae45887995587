from __future__ import annotations

import pytest

from annotation import scoring
from annotation.models import Question
from tests.annotation.standins import METADATA, make_standin_images
from tests.factories import make_dataset, make_endpoint, make_question, make_response, make_run


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


@pytest.fixture
def dialogue(db):
    """A dialogue seed and an accepted rewrite of it with no history of its own (the history lives
    on the seed, like the reference answer), each with a response, in the scoring queue."""
    dataset = make_dataset(name="dialogue")
    history = [{"user": "HISTORY-USER-TURN 图里有几只猫？", "assistant": "HISTORY-ASSISTANT-TURN 两只。"}]
    seed = make_question(dataset=dataset, task="Coherence", group="00110000", text="它们是什么颜色的？",
                         reference="REFERENCE-OF-THE-SEED", history=history)
    # Straight into the table: what Question.clean() allows a rewrite is no part of this.
    rewrite = Question.objects.create(dataset=dataset, image=seed.image, task="Coherence", group=seed.group,
                                      variant=1, text="猫是什么颜色？", history=[], status="accepted")
    run = make_run(endpoint=make_endpoint(name="dialogue-model"), dataset=dataset)
    responses = {"seed": make_response(run=run, question=seed, text="白色。"),
                 "rewrite": make_response(run=run, question=rewrite, text="黑白相间。")}
    scoring.queue_sync(dataset)
    return dataset, responses
