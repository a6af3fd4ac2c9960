"""core/chunked.py: a chunked request body (no Content-Length) reaches Django whole, or is a 413."""

import io
import json

from core.chunked import read_chunked_bodies


def call(app, body, **environ):
    seen = {}
    base = {"REQUEST_METHOD": "POST", "wsgi.input": io.BytesIO(body), "HTTP_TRANSFER_ENCODING": "chunked"}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    out = b"".join(app({**base, **environ}, start_response))
    return seen, out


def echo(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    start_response("200 OK", [])
    return [environ["wsgi.input"].read(length)]


def test_it_hands_the_whole_chunked_body_on_with_its_length():
    seen, out = call(read_chunked_bodies(echo, limit=1000), b"x" * 600)
    assert seen["status"] == "200 OK" and out == b"x" * 600


def test_a_chunked_body_over_the_limit_is_a_413_naming_the_limit():
    seen, out = call(read_chunked_bodies(echo, limit=100), b"x" * 101)
    assert seen["status"].startswith("413") and seen["headers"]["Connection"] == "close"
    assert "100 bytes" in json.loads(out)["detail"]


def test_a_body_with_a_length_is_left_to_django():
    seen, out = call(read_chunked_bodies(echo, limit=100), b"abc", HTTP_TRANSFER_ENCODING="", CONTENT_LENGTH="3")
    assert out == b"abc"
