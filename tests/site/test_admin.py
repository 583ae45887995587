import pytest
from django.contrib import admin
from django.urls import reverse

from tests.factories import make_dataset, make_endpoint, make_question, make_response, make_run


@pytest.fixture
def some_rows(db):
    dataset = make_dataset()
    make_response(run=make_run(endpoint=make_endpoint(), dataset=dataset), question=make_question(dataset=dataset))


@pytest.mark.parametrize("model", list(admin.site._registry), ids=lambda m: m._meta.label)
def test_it_loads_every_admin_changelist(client, staff, some_rows, model):
    client.force_login(staff)
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    assert client.get(url).status_code == 200
    assert client.get(url, {"q": "测试"}).status_code == 200


def test_it_keeps_non_staff_out_of_the_admin(client, researcher):
    client.force_login(researcher)
    assert client.get("/admin/").status_code == 302
