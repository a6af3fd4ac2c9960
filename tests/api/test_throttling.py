"""The rate limit holds when requests arrive at once (core/throttling.py)."""

import threading
from types import SimpleNamespace

from core.throttling import AtomicScopedRateThrottle

from ..base import throttle_rates


def allowed_of(concurrent, rate):
    view = SimpleNamespace(throttle_scope="predict")
    request = SimpleNamespace(user=SimpleNamespace(is_authenticated=True, pk=7), META={"REMOTE_ADDR": "10.0.0.1"})
    start, results = threading.Barrier(concurrent), []

    def one():
        throttle = AtomicScopedRateThrottle()
        start.wait()
        results.append(throttle.allow_request(request, view))

    with throttle_rates(predict=rate):
        threads = [threading.Thread(target=one) for _ in range(concurrent)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return sum(results)


def test_exactly_the_rate_gets_through_when_requests_arrive_at_once():
    assert allowed_of(200, "60/min") == 60


def test_it_counts_each_client_apart():
    view = SimpleNamespace(throttle_scope="predict")
    with throttle_rates(predict="1/min"):
        first, second = (SimpleNamespace(user=SimpleNamespace(is_authenticated=True, pk=pk), META={})
                         for pk in (1, 2))
        assert AtomicScopedRateThrottle().allow_request(first, view)
        assert not AtomicScopedRateThrottle().allow_request(first, view)
        assert AtomicScopedRateThrottle().allow_request(second, view)


def test_it_lets_requests_through_when_the_cache_is_down(monkeypatch):
    from django.core.cache import cache

    def down(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379")

    view = SimpleNamespace(throttle_scope="predict")
    request = SimpleNamespace(user=SimpleNamespace(is_authenticated=True, pk=3), META={})
    with throttle_rates(predict="1/min"):
        monkeypatch.setattr(cache, "add", down)
        assert all(AtomicScopedRateThrottle().allow_request(request, view) for _ in range(3))
