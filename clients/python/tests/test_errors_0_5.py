"""A Throttle 0.5 server's error answers map to the same typed exceptions as ours.

The rows are the statuses and texts a 0.5.13 server (and axum, its HTTP layer) answered to each
kind of refusal, copied from its answers.
"""

from __future__ import annotations

from typing import Tuple, Type

import pytest

from throttle_client import (
    BodyTooLarge,
    Client,
    CountTooLarge,
    InvalidBody,
    InvalidCount,
    InvalidDuration,
    InvalidRequest,
    LockCountChange,
    LockHierarchyViolation,
    RequestRejected,
    RestoreConflict,
    SecondPendingLock,
    ThrottleError,
    UnexpectedResponse,
    UnknownPeer,
    UnknownSemaphore,
    lock,
)
from throttle_client.errors import error_for

from .stub_server import StubServer

ANSWERS_OF_0_5 = [
    (400, "Unknown semaphore", UnknownSemaphore),
    (400, "Unknown peer", UnknownPeer),
    (409, "Lock can never be acquired. Lock asks for count 2 yet full count is only 1.",
     CountTooLarge),
    (409, "Lock hierachy violation. This may deadlock. The current lock level is 0 the\n"
          "        requested lock level was 1.", LockHierarchyViolation),
    (409, "Already pending. Only one pendig lock per peer is allowed.", SecondPendingLock),
    (400, "Lock count must be a positive number. Found: 0.", InvalidCount),
    (409, "Restore is not allowed to change existing peers.", RestoreConflict),
    (501, "Shrinking the count of an existing lock is currently not implemented.",
     LockCountChange),
    (400, "Failed to parse the request body as JSON: expected value at line 1 column 1",
     InvalidBody),
    (422, "Failed to deserialize the JSON body into the target type: invalid type: floating "
          "point `1.5`, expected i64 at line 1 column 3", InvalidBody),
    (422, "Failed to deserialize the JSON body into the target type: missing field `acquired` "
          "at line 1 column 31", InvalidBody),
    (415, "Expected request with `Content-Type: application/json`", InvalidBody),
    (413, "Failed to buffer the request body: length limit exceeded", BodyTooLarge),
    (400, "Failed to deserialize query string: missing field `semaphore`", InvalidRequest),
    (400, "Invalid URL: Cannot parse value at index 0 with value `abc` to a `u64`",
     InvalidRequest),
    (400, 'Failed to deserialize query string: block_for: invalid value: string "abc", '
          "expected a duration", InvalidDuration),
    (422, "Failed to deserialize the JSON body into the target type: expires_in: invalid "
          'value: string "abc", expected a duration at line 1 column 19', InvalidDuration),
]


@pytest.mark.parametrize(
    "status, text, expected", ANSWERS_OF_0_5, ids=[row[1][:30] for row in ANSWERS_OF_0_5]
)
def test_an_answer_of_0_5_maps_to_our_class(
    status: int, text: str, expected: Type[ThrottleError]
) -> None:
    error = error_for(status, text)
    assert type(error) is expected
    assert error is not None and str(error) == text
    assert getattr(error, "status_code") == status


def test_refusals_of_0_5_stay_value_errors_as_its_client_raised() -> None:
    for status, text, expected in ANSWERS_OF_0_5:
        if expected is not UnknownPeer:
            assert isinstance(error_for(status, text), ValueError), text


def test_other_answers_of_a_0_5_server_are_not_taken_for_refusals() -> None:
    # An unknown 501 is still a server error, a new 422 text still a refusal.
    assert error_for(501, "Not implemented") is None
    assert type(error_for(422, "Something else")) is RequestRejected


def test_a_client_against_a_0_5_server_raises_typed_errors_at_once() -> None:
    def script(method: str, path: str) -> Tuple[int, str]:
        if path == "/new_peer":
            return 200, "17587590866964211894"  # 0.5's ids use all 64 bits.
        if method == "PUT" and path.startswith("/peers/17587590866964211894/C"):
            return 501, "Shrinking the count of an existing lock is currently not implemented."
        if method == "PUT":
            return 409, (
                "Lock can never be acquired. Lock asks for count 2 yet full count is only 1."
            )
        return 200, '"Peer released"'

    with StubServer(script) as stub:
        with pytest.raises(CountTooLarge, match="never be acquired"):
            with lock(stub.url, "A", count=2):
                pass
        # The peer was removed again, and nothing was retried.
        assert [method for method, _ in stub.requests] == ["POST", "PUT", "DELETE"]
        client = Client(stub.url)
        with pytest.raises(LockCountChange) as raised:
            client.acquire(17587590866964211894, "C", count=1)
        assert raised.value.status_code == 501
        assert not isinstance(raised.value, UnexpectedResponse)
        assert len(stub.requests) == 4
