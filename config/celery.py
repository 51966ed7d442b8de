"""The Celery app of the distributed shape: workers execute runs (orchestrator.tasks).

Configured from Django settings prefixed CELERY_; tasks are found with autodiscover.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("agentdeck")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
