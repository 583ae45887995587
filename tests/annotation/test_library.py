"""The image library: filters, search, pagination, and a bounded number of queries at 10,000 images."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Image, Tag
from tests.factories import make_dataset, make_image, make_question

URL = reverse("annotation:library")


def bulk_images(count: int) -> None:
    """Rows only (the page links thumbnails, it doesn't read files): fast enough for 10,000."""
    Image.objects.bulk_create(
        [Image(file=f"images/x/{i:064x}.png", sha256=f"{i:064x}", width=64, height=48, format="PNG",
               original_name=f"bulk-{i}.png", source="bulk") for i in range(count)], batch_size=2000)


@pytest.fixture
def library(db):
    meme, chart = make_image(seed=1), make_image(seed=2)
    meme.original_name, meme.source = "doge.png", "微博"
    meme.save()
    meme.tags.add(Tag.objects.create(name="meme"))
    make_image(seed=3)  # no questions
    make_question(dataset=make_dataset(name="charts"), image=chart, task="Chart", text="这张图表的最大值是多少？")
    make_question(dataset=make_dataset(name="memes"), image=meme, task="Meme", text="解释这个梗")
    return {"meme": meme, "chart": chart}


def _names(response) -> list[str]:
    return [image.original_name for image in response.context["page"]]


@pytest.mark.parametrize("query,expected", [
    ({"tag": "meme"}, ["doge.png"]),
    ({"task": "Chart"}, ["img-2.png"]),
    ({"has_questions": "no"}, ["img-3.png"]),
    ({"has_questions": "yes"}, ["img-2.png", "doge.png"]),
    ({"source": "微博"}, ["doge.png"]),
    ({"q": "最大值"}, ["img-2.png"]),
    ({"q": "doge"}, ["doge.png"]),
    ({"q": "<script>"}, []),
])
def test_it_filters_and_searches(client, curator, library, query, expected):
    client.force_login(curator)
    assert _names(client.get(URL, query)) == expected


def test_it_filters_by_dataset(client, curator, library):
    client.force_login(curator)
    charts = library["chart"].questions.get().dataset
    assert _names(client.get(URL, {"dataset": charts.pk})) == ["img-2.png"]


def test_it_renders_only_the_grid_for_htmx_and_escapes_names(client, curator, library):
    library["meme"].original_name = "<img src=x onerror=alert(1)>.png"
    library["meme"].save()
    client.force_login(curator)
    response = client.get(URL, {"tag": "meme"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="grid">') and "<h1>" not in html
    assert "<img src=x" not in html and "&lt;img src=x" in html


def test_it_is_for_curators_and_researchers(client, annotator):
    client.force_login(annotator)
    assert client.get(URL).status_code == 403


def test_it_pages_10000_images_with_a_bounded_number_of_queries(client, curator, django_assert_max_num_queries):
    bulk_images(10_000)
    Tag.objects.create(name="meme").images.add(*Image.objects.all()[:500])
    client.force_login(curator)
    with django_assert_max_num_queries(10):
        response = client.get(URL, {"page": 120})
    assert response.status_code == 200
    assert len(response.context["page"]) == 48 and response.context["page"].paginator.count == 10_000
    with django_assert_max_num_queries(10):
        response = client.get(URL, {"tag": "meme", "has_questions": "no", "q": "bulk-1", "page": 2})
    assert response.status_code == 200


def test_the_grid_links_each_image_and_its_thumbnail(client, curator, library):
    client.force_login(curator)
    html = client.get(URL, {"tag": "meme"}).content.decode()
    meme = library["meme"]
    assert f'href="{reverse("annotation:image", args=[meme.pk])}"' in html
    assert f'src="{reverse("annotation:image_thumbnail", args=[meme.pk])}"' in html
