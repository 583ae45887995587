from django.urls import path

from . import views

app_name = "evaluation"
urlpatterns = [
    path("runs/", views.run_list, name="runs"),
    path("status/", views.status, name="status"),
    path("status/ping", views.status_ping, name="status_ping"),
    path("status/ping/<int:pk>", views.status_ping_result, name="status_ping_result"),
]
