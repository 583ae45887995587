from django.urls import path

from . import views

app_name = "evaluation"
urlpatterns = [
    path("runs/", views.run_list, name="runs"),
    path("runs/new", views.run_create, name="run_create"),
    path("runs/import", views.responses_import, name="responses_import"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/cancel", views.run_cancel, {"kind": "inference"}, name="run_cancel"),
    path("runs/<int:pk>/resume", views.run_resume, {"kind": "inference"}, name="run_resume"),
    path("runs/<int:pk>/retry-failed", views.run_retry, {"kind": "inference"}, name="run_retry_failed"),
    path("runs/<int:pk>/export.jsonl", views.run_export, name="run_export"),
    path("critic-runs/new", views.critic_run_create, name="critic_run_create"),
    path("critic-runs/<int:pk>/", views.critic_run_detail, name="critic_run"),
    path("critic-runs/<int:pk>/cancel", views.run_cancel, {"kind": "critic"}, name="critic_run_cancel"),
    path("critic-runs/<int:pk>/resume", views.run_resume, {"kind": "critic"}, name="critic_run_resume"),
    path("critic-runs/<int:pk>/retry", views.run_retry, {"kind": "critic"}, name="critic_run_retry"),
    path("critic-runs/<int:pk>/export.jsonl", views.critic_run_export, name="critic_run_export"),
    path("responses/<int:pk>/", views.response_detail, name="response"),
    path("rewrite-runs/new", views.rewrite_run_create, name="rewrite_run_create"),
    path("rewrite-runs/<int:pk>/", views.rewrite_run_detail, name="rewrite_run"),
    path("rewrite-runs/<int:pk>/cancel", views.run_cancel, {"kind": "rewrite"}, name="rewrite_run_cancel"),
    path("rewrite-runs/<int:pk>/resume", views.run_resume, {"kind": "rewrite"}, name="rewrite_run_resume"),
    path("rewrite-runs/<int:pk>/retry", views.run_retry, {"kind": "rewrite"}, name="rewrite_run_retry"),
    path("templates/", views.templates_list, name="templates"),
    path("templates/new", views.template_create, name="template_create"),
    path("templates/<int:pk>/", views.template_detail, name="template"),
    path("templates/<int:pk>/preview", views.template_preview, name="template_preview"),
    path("endpoints/", views.endpoints, name="endpoints"),
    path("endpoints/<int:pk>/", views.endpoint, name="endpoint"),
    path("endpoints/<int:pk>/check", views.endpoint_check, name="endpoint_check"),
    path("endpoints/<int:pk>/check/<int:check_pk>", views.endpoint_check_result, name="endpoint_check_result"),
    path("status/", views.status, name="status"),
    path("status/ping", views.status_ping, name="status_ping"),
    path("status/ping/<int:pk>", views.status_ping_result, name="status_ping_result"),
]
