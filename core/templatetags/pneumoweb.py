from django import template
from django.conf import settings
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.html import format_html

register = template.Library()


@register.filter
def percent(value, digits=1):
    """0.8734 → "87.3%"; blank for missing values."""
    if value is None or value == "":
        return ""
    return f"{float(value) * 100:.{int(digits)}f}%"


@register.simple_tag
def idle_timeout_attributes():
    """<body> attributes that static/js/idle-timeout.js reads: the idle sign-out's times and where to ask."""
    return format_html('data-idle-timeout="{}" data-idle-warning="{}" data-idle-url="{}" data-login-url="{}"',
                       settings.PNEUMOWEB_IDLE_TIMEOUT_SECONDS, settings.PNEUMOWEB_IDLE_WARNING_SECONDS,
                       reverse("session_activity"), resolve_url(settings.LOGIN_URL))
