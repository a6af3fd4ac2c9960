"""Helpers shared by test modules (imported explicitly, not through conftest)."""

import contextlib


def api_client_for(user):
    """An API client that sends a real (knox) token of ``user``."""
    from knox.models import AuthToken
    from rest_framework.test import APIClient

    client = APIClient()
    _, token = AuthToken.objects.create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@contextlib.contextmanager
def throttle_rates(**rates):
    """Run the block with these DRF throttle rates (e.g. predict="2/min"), on an empty cache."""
    from django.core.cache import cache
    from rest_framework.settings import api_settings

    from core.throttling import AtomicScopedRateThrottle

    cache.clear()
    original = AtomicScopedRateThrottle.THROTTLE_RATES
    AtomicScopedRateThrottle.THROTTLE_RATES = {**api_settings.DEFAULT_THROTTLE_RATES, **rates}
    try:
        yield
    finally:
        AtomicScopedRateThrottle.THROTTLE_RATES = original
        cache.clear()
