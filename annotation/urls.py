from django.urls import path, re_path

from . import views

app_name = "annotation"
urlpatterns = [
    path("images/", views.image_library, name="library"),
    path("images/upload/", views.upload_page, name="upload"),
    path("images/upload/files", views.upload_images, name="upload_files"),
    path("images/<int:pk>/", views.image_detail, name="image"),
    path("images/<int:pk>/edit", views.image_edit, name="image_edit"),
    path("images/<int:pk>/questions/new", views.question_new, name="question_new"),
    path("images/<int:pk>/file", views.image_file, name="image_file"),
    path("images/<int:pk>/thumb", views.image_thumbnail, name="image_thumbnail"),
    path("questions/<int:pk>/", views.question_detail, name="question"),
    path("questions/<int:pk>/edit", views.question_edit, name="question_edit"),
    path("datasets/", views.dataset_list, name="datasets"),
    path("datasets/new", views.dataset_create, name="dataset_create"),
    path("datasets/<int:pk>/", views.dataset_detail, name="dataset"),
    path("datasets/<int:pk>/add", views.dataset_add, name="dataset_add"),
    path("datasets/<int:pk>/selection", views.dataset_selection, name="dataset_selection"),
    path("datasets/<int:pk>/freeze", views.dataset_freeze, name="dataset_freeze"),
    path("datasets/<int:pk>/copy", views.dataset_copy, name="dataset_copy"),
    path("datasets/<int:pk>/scoring", views.dataset_scoring, name="dataset_scoring"),
    re_path(r"^datasets/(?P<pk>\d+)/export\.(?P<fmt>jsonl|csv|zip)$", views.dataset_export, name="dataset_export"),
    path("datasets/<int:pk>/review/", views.rewrite_review, name="rewrite_review"),
    path("rewrites/<int:pk>/accept", views.rewrite_accept, name="rewrite_accept"),
    path("rewrites/<int:pk>/reject", views.rewrite_reject, name="rewrite_reject"),
    path("questions/<int:pk>/accept-unflagged", views.rewrite_accept_unflagged, name="rewrite_accept_unflagged"),
    path("imports/", views.import_page, name="import"),
    path("imports/new", views.import_start, name="import_start"),
    path("imports/<int:pk>/", views.import_job, name="import_job"),
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
