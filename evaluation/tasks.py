"""Celery tasks: thin. Each fetches its row by id and calls the real function in the module of its subject."""

from __future__ import annotations

from celery import shared_task

from . import critics, inference, rewrites, workers
from .models import Ping


@shared_task(name="evaluation.tasks.answer_ping", soft_time_limit=30, time_limit=60)
def answer_ping(ping_id: int) -> None:
    from .signals import WORKER_NAME

    ping = Ping.objects.filter(pk=ping_id).first()
    if ping is not None:
        ping.answer(WORKER_NAME)


@shared_task(name="evaluation.tasks.check_endpoint", soft_time_limit=600, time_limit=660)
def check_endpoint(check_id: int) -> None:
    workers.endpoint_check_work(check_id)


@shared_task(name="evaluation.tasks.run_inference")
def run_inference(run_id: int) -> None:
    inference.inference_run_work(run_id)


@shared_task(name="evaluation.tasks.run_critic")
def run_critic(run_id: int) -> None:
    critics.critic_run_work(run_id)


@shared_task(name="evaluation.tasks.run_rewrites")
def run_rewrites(run_id: int) -> None:
    rewrites.rewrite_run_work(run_id)


@shared_task(name="evaluation.tasks.train_critic")
def train_critic(run_id: int) -> None:
    from . import training

    training.training_run_work(run_id)
