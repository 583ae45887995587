from django.urls import path

from . import views

app_name = "annotation"
urlpatterns = [
    path("images/", views.image_library, name="library"),
    path("images/<int:pk>/file", views.image_file, name="image_file"),
    path("images/<int:pk>/thumb", views.image_thumbnail, name="image_thumbnail"),
    path("score/", views.score_home, name="score_home"),
]
