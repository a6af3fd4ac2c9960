import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pneumoweb.settings")
# A chunked request body (no Content-Length: Orthanc's STOW-RS client, streaming clients) is read
# whole before Django sees it, which would otherwise read it as empty (core/chunked.py).
from core.chunked import read_chunked_bodies  # noqa: E402

application = read_chunked_bodies(get_wsgi_application(), settings.DATA_UPLOAD_MAX_MEMORY_SIZE)

# Django's system checks do not run under gunicorn: refuse here what `manage.py check` would refuse.
from core.checks import refuse_misconfiguration  # noqa: E402

refuse_misconfiguration()
