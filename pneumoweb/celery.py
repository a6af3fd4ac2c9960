import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pneumoweb.settings")

app = Celery("pneumoweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
