import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pneumoweb.settings")
application = get_wsgi_application()

# Django's system checks do not run under gunicorn: refuse here what `manage.py check` would refuse.
from core.checks import refuse_misconfiguration  # noqa: E402

refuse_misconfiguration()
