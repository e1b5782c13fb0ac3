"""A small synchronous Python client for a gradlight server.

    from gradlight.client import Client

    with Client("127.0.0.1:50051") as client:
        response = client.attribute(["Patient denies chest pain."], sentence_attributions=True)
        result = response.results[0]
        print(result.predicted_label, list(zip(result.labels, result.probabilities)))
        for token in result.tokens:
            print(result.text[token.start:token.end], list(token.scores))

Texts longer than the model's window: ``long_texts="windows"`` reads them whole, in
overlapping windows (``result.windows`` and ``result.aggregation``; tokens, sentences and their
offsets cover the whole text), ``long_texts="truncate"`` cuts them (``result.truncated``);
left out, the server's ``--long-texts`` decides. ``predict`` and ``attribute`` both take it,
with ``window_stride`` and ``aggregation``.

A server with TLS and tokens: ``Client(target, tls_ca="ca.pem", token="...")`` (``tls=True``
trusts the system's roots; the token goes as ``authorization: Bearer`` metadata on every call).

Calls answered UNAVAILABLE or RESOURCE_EXHAUSTED are retried by gRPC itself with a jittered
exponential backoff, within the call's deadline. The whole connection (target, TLS, token,
message limit, load balancing, retry policy) is one ``Connection``
(client/connection.py): ``Client(connection=Connection(target, retry=RetryPolicy(...)))``.

Responses are the protobuf messages of ``gradlight.v1`` (see proto/gradlight/v1/gradlight.proto).
Errors are ``grpc.RpcError`` with the server's status code and message.
"""

from __future__ import annotations

from gradlight.client.client import Client, ServerNotReadyError
from gradlight.client.connection import Connection, RetryPolicy

__all__ = ["Client", "Connection", "RetryPolicy", "ServerNotReadyError"]
