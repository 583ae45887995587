from django.urls import path

from . import views

app_name = "annotation"
urlpatterns = [
    path("images/", views.image_library, name="library"),
    path("images/<int:pk>/file", views.image_file, name="image_file"),
    path("images/<int:pk>/thumb", views.image_thumbnail, name="image_thumbnail"),
    path("score/", views.score_home, name="score_home"),
]
# Human scoring workspace (issue 7).
urlpatterns += [
    path("score/<int:dataset_pk>/next", views.score_next, name="score_next"),
    path("score/item/<int:pk>/", views.score_item, name="score_item"),
    path("score/item/<int:pk>/submit", views.score_submit, name="score_submit"),
    path("score/item/<int:pk>/skip", views.score_skip, name="score_skip"),
    path("score/done/<int:response_pk>/", views.score_done, name="score_done"),
    path("score/done/<int:response_pk>/edit", views.score_edit, name="score_edit"),
    path("score/mine/", views.score_mine, name="score_mine"),
    path("score/progress/", views.score_progress, name="score_progress"),
    path("adjudication/", views.adjudication_queue, name="adjudication_queue"),
    path("adjudication/<int:response_pk>/", views.adjudication_detail, name="adjudication_detail"),
]
