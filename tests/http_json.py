"""Plain HTTP requests to the server's JSON endpoints (urllib: nothing between the test and the
socket but the standard library)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from gradlight.runtime.serving.json_messages import to_json


def request(url, body=None, *, content_type="application/json", method=None, headers=None):
    """``(status, headers, payload)``; ``body``: bytes as they are, anything else as JSON."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    message = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        message.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(message, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def request_json(url, body=None, **kwargs):
    """``(status, decoded JSON answer)``."""
    status, _, payload = request(url, body, **kwargs)
    return status, json.loads(payload)


def grpc_json(message):
    """A gRPC answer as the HTTP endpoints print it (the fields that apply, in proto order)."""
    return to_json(message)
