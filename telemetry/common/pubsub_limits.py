"""Pub/Sub's documented limits on a gRPC channel to the emulator, which enforces none of them.

telemetry.common.cloud builds the emulator's clients on `emulator_channel`; clients
of the real service never pass through here. A request the service refuses is
refused before it leaves, with the status (INVALID_ARGUMENT) and detail the
service answers with (telemetry.common.service_limits), so the client library
raises what it raises in production: google.api_core.exceptions.InvalidArgument,
"400 <detail>". A pull asking for more than 1,000 messages is sent asking for
1,000: the service accepts such a pull and returns at most 1,000.

Covered: Publish, Pull, ModifyAckDeadline, CreateSubscription, UpdateSubscription
(the unary calls the product makes). StreamingPull is not checked: the product
pulls synchronously.
"""

from __future__ import annotations

import functools
from typing import Any

from telemetry.common import service_limits

# grpc is imported where it is used (the ingest functions' zip carries common/ without it).

PUBLISH = "/google.pubsub.v1.Publisher/Publish"
PULL = "/google.pubsub.v1.Subscriber/Pull"
MODIFY_ACK_DEADLINE = "/google.pubsub.v1.Subscriber/ModifyAckDeadline"
CREATE_SUBSCRIPTION = "/google.pubsub.v1.Subscriber/CreateSubscription"
UPDATE_SUBSCRIPTION = "/google.pubsub.v1.Subscriber/UpdateSubscription"


def _pb(request: Any) -> Any:
    """The protobuf message of a proto-plus request (or the message itself)."""
    return type(request).pb(request) if hasattr(type(request), "pb") else request


def refusal(method: str, request: Any) -> str | None:
    """The detail of the service's INVALID_ARGUMENT for this call, or None."""
    if method == PUBLISH:
        pb = _pb(request)
        return service_limits.pubsub_publish_refusal(pb.ByteSize(), len(pb.messages))
    if method == PULL:
        return service_limits.pubsub_pull_refusal(request.max_messages)
    if method == MODIFY_ACK_DEADLINE:
        return service_limits.pubsub_modify_ack_deadline_refusal(request.ack_deadline_seconds)
    if method == CREATE_SUBSCRIPTION:
        return service_limits.pubsub_subscription_ack_deadline_refusal(request.ack_deadline_seconds)
    if method == UPDATE_SUBSCRIPTION and "ack_deadline_seconds" in list(request.update_mask.paths):
        return service_limits.pubsub_subscription_ack_deadline_refusal(request.subscription.ack_deadline_seconds)
    return None


def capped_pull(request: Any) -> Any:
    """The pull the service serves: at most PUBSUB_MAX_MESSAGES_PER_PULL messages (a copy;
    the caller's request is left as it was)."""
    if request.max_messages <= service_limits.PUBSUB_MAX_MESSAGES_PER_PULL:
        return request
    capped = type(request).deserialize(type(request).serialize(request))
    capped.max_messages = service_limits.PUBSUB_MAX_MESSAGES_PER_PULL
    return capped


@functools.cache
def _classes() -> tuple[type, type]:
    """(Refused, LimitsInterceptor), made on first use."""
    import grpc

    class Refused(grpc.RpcError, grpc.Future, grpc.Call):
        """The service's refusal of one call, as the finished call grpc returns for an RPC
        that failed: `result()` raises it, with a status code and details and no trailing
        metadata, so google.api_core maps it as it maps the service's own."""

        def __init__(self, details: str, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT):
            super().__init__(details)
            self._details, self._code = details, code

        def code(self) -> grpc.StatusCode:
            return self._code

        def details(self) -> str:
            return self._details

        def initial_metadata(self) -> None:
            return None

        def trailing_metadata(self) -> None:
            return None

        def result(self, timeout: float | None = None) -> Any:
            raise self

        def exception(self, timeout: float | None = None) -> Exception:
            return self

        def traceback(self, timeout: float | None = None) -> None:
            return None

        def add_done_callback(self, fn) -> None:
            fn(self)

        def add_callback(self, callback) -> bool:
            return False

        def cancel(self) -> bool:
            return False

        def cancelled(self) -> bool:
            return False

        def running(self) -> bool:
            return False

        def done(self) -> bool:
            return True

        def is_active(self) -> bool:
            return False

        def time_remaining(self) -> None:
            return None

    class LimitsInterceptor(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation, client_call_details, request):
            method = client_call_details.method
            detail = refusal(method, request)
            if detail is not None:
                return Refused(detail)
            if method == PULL:
                request = capped_pull(request)
            return continuation(client_call_details, request)

    return Refused, LimitsInterceptor


def emulator_channel(host: str) -> Any:
    """An insecure channel to the emulator that refuses what Pub/Sub refuses. Its message
    sizes are unbounded, as on the library's channel to the real service (the library's
    own emulator channel keeps gRPC's 4 MiB receive limit, which the service does not have)."""
    import grpc

    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    return grpc.intercept_channel(grpc.insecure_channel(host, options=options), _classes()[1]())
