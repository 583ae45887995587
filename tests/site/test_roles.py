"""Role routing and 403s for every page: permissions live in views, so every URL is asked directly."""

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.sessions.models import Session
from django.urls import reverse

from annotation.auth import RoleBackend
from tests.factories import PASSWORD, make_image, make_user

# (url name, kwargs, roles allowed). Staff may open everything.
PAGES = [
    ("annotation:library", {}, {"curator", "researcher"}),
    ("annotation:score_home", {}, {"annotator"}),
    ("evaluation:runs", {}, {"researcher"}),
    ("evaluation:status", {}, set()),
]
IMAGE_PAGES = [("annotation:image_file", {"curator", "researcher", "annotator"}),
               ("annotation:image_thumbnail", {"curator", "researcher", "annotator"})]


@pytest.fixture
def people(curator, annotator, researcher, staff, nobody):
    return {"curator": curator, "annotator": annotator, "researcher": researcher, "staff": staff, "nobody": nobody}


@pytest.mark.parametrize("role,target", [("curator", "annotation:library"), ("annotator", "annotation:score_home"),
                                         ("researcher", "evaluation:runs"), ("staff", "evaluation:runs")])
def test_it_sends_each_role_to_its_work(client, people, role, target):
    client.force_login(people[role])
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == reverse(target)


def test_it_tells_a_user_without_a_role_what_to_do(client, nobody):
    client.force_login(nobody)
    response = client.get("/")
    assert response.status_code == 200 and "No role yet" in response.content.decode()


def test_it_sends_anonymous_visitors_to_the_login_page(client, db):
    for name, kwargs, _ in PAGES:
        response = client.get(reverse(name, kwargs=kwargs))
        assert response.status_code == 302 and response["Location"].startswith("/login/"), name


@pytest.mark.parametrize("name,kwargs,allowed", PAGES)
@pytest.mark.parametrize("role", ["curator", "annotator", "researcher", "staff", "nobody"])
def test_it_checks_the_role_on_every_page(client, people, name, kwargs, allowed, role):
    client.force_login(people[role])
    response = client.get(reverse(name, kwargs=kwargs))
    expected = 200 if role == "staff" or role in allowed else 403
    assert response.status_code == expected
    if expected == 403:
        assert "Not allowed" in response.content.decode()


@pytest.mark.parametrize("name,allowed", IMAGE_PAGES)
@pytest.mark.parametrize("role", ["curator", "annotator", "researcher", "nobody"])
def test_it_checks_the_role_on_image_files(client, people, name, allowed, role):
    image = make_image()
    client.force_login(people[role])
    response = client.get(reverse(name, args=[image.pk]))
    assert response.status_code == (200 if role in allowed else 403)


def test_it_shows_a_friendly_404(client, curator):
    client.force_login(curator)
    response = client.get("/images/999999/file")
    assert response.status_code == 404 and "Not found" in response.content.decode()


def test_it_shows_only_the_roles_links_in_the_nav(client, annotator):
    client.force_login(annotator)
    html = client.get(reverse("annotation:score_home")).content.decode()
    assert 'data-nav="score"' in html
    assert 'data-nav="runs"' not in html and 'data-nav="library"' not in html and 'data-nav="status"' not in html


def test_it_logs_out_with_a_post(client, curator):
    client.force_login(curator)
    response = client.post("/logout/")
    assert response.status_code == 302
    assert client.get("/").status_code == 302 and "_auth_user_id" not in client.session


def test_it_ends_the_session_on_the_server_at_logout(client, curator):
    response = client.post("/login/", {"username": "cora", "password": PASSWORD})
    assert response.status_code == 302
    cookie = response.cookies["sessionid"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and Session.objects.count() == 1
    assert client.get(reverse("annotation:library")).status_code == 200
    client.post("/logout/")
    assert not Session.objects.exists()
    client.cookies["sessionid"] = cookie.value  # a copy taken before logout
    assert client.get(reverse("annotation:library")).status_code == 302, "a copied cookie outlives no logout"


def test_it_creates_the_role_groups_in_a_migration(db):
    from django.contrib.auth.models import Group

    assert set(Group.objects.values_list("name", flat=True)) >= {"curator", "annotator", "researcher"}


def test_it_loads_the_signed_in_user_with_their_roles_in_one_query(db, django_assert_num_queries):
    cora = make_user(username="cora2", role="curator")
    cora.groups.add(Group.objects.get_or_create(name="researcher")[0])
    with django_assert_num_queries(1):
        user = RoleBackend().get_user(str(cora.pk))
        assert user == cora and user._alignbench_roles == {"curator", "researcher"}
    assert RoleBackend().get_user("999999") is None and RoleBackend().get_user("not a number") is None
    User.objects.filter(pk=cora.pk).update(is_active=False)
    assert RoleBackend().get_user(str(cora.pk)) is None
