"""Retries, keep-alive and early 202s, against a scripted stub server."""

from __future__ import annotations

import pickle
import socket
import threading
import time
from datetime import timedelta
from typing import Tuple

import pytest
import requests

from throttle_client import (
    Client,
    ServerUnavailable,
    Timeout,
    UnexpectedResponse,
    UnknownSemaphore,
    lock,
)

from .stub_server import StubServer


def test_server_errors_are_retried_until_they_heal() -> None:
    answers = [(503, "Shutting down"), (502, "Bad gateway"), (200, "7")]

    def script(method: str, path: str) -> Tuple[int, str]:
        return answers.pop(0)

    with StubServer(script) as stub:
        assert Client(stub.url).remainder("A") == 7
        assert len(stub.requests) == 3


def test_server_errors_are_retried_for_a_bounded_time() -> None:
    with StubServer(lambda method, path: (500, "Oops")) as stub:
        started = time.monotonic()
        with pytest.raises(UnexpectedResponse) as raised:
            Client(stub.url, retry_for=timedelta(milliseconds=500)).remainder("A")
        assert raised.value.status_code == 500
        assert time.monotonic() - started < 3
        assert 2 <= len(stub.requests) < 30


def test_refusals_are_never_retried() -> None:
    with StubServer(lambda method, path: (400, "Unknown semaphore")) as stub:
        with pytest.raises(UnknownSemaphore):
            Client(stub.url).remainder("A")
        assert len(stub.requests) == 1


def test_connection_errors_are_retried_for_a_bounded_time() -> None:
    # A port that was free a moment ago: nothing listens there.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    client = Client(url, retry_for=timedelta(milliseconds=400))
    started = time.monotonic()
    with pytest.raises(ServerUnavailable) as raised:
        client.remainder("A")
    assert 0.3 <= time.monotonic() - started < 3
    assert str(raised.value) == f"server {url} unreachable within 0.4 s: connection refused"
    assert raised.value.attempts == [(url, "connection refused")]
    # What the 0.5 client raised, for `except` clauses written for it.
    assert isinstance(raised.value, requests.ConnectionError)
    # It crosses process boundaries, e.g. from a worker process to its parent.
    copy = pickle.loads(pickle.dumps(raised.value))
    assert type(copy) is type(raised.value) and str(copy) == str(raised.value)


def test_a_timeout_is_server_unavailable_and_a_requests_timeout() -> None:
    # The stub answers only once the client has given up waiting.
    answer = threading.Event()

    def script(method: str, path: str) -> Tuple[int, str]:
        answer.wait(timeout=10)
        return 200, "1"

    with StubServer(script) as stub:
        client = Client(
            stub.url,
            retry_for=timedelta(milliseconds=0),
            request_timeout=timedelta(milliseconds=100),
        )
        with pytest.raises(ServerUnavailable) as raised:
            client.remainder("A")
        answer.set()
    assert str(raised.value) == f"server {stub.url} unreachable within 0 s: timed out"
    assert isinstance(raised.value, requests.Timeout)


def test_a_url_requests_cannot_send_to_is_server_unavailable_at_once() -> None:
    with pytest.raises(ServerUnavailable) as raised:
        Client("localhost:8000").remainder("A")
    assert str(raised.value).startswith("server localhost:8000 unreachable: ")
    assert isinstance(raised.value, requests.RequestException)


def test_one_connection_serves_consecutive_requests() -> None:
    with StubServer(lambda method, path: (200, "1")) as stub:
        client = Client(stub.url)
        for _ in range(10):
            client.remainder("A")
        assert len(stub.connections) == 1


def test_an_early_202_does_not_turn_lock_into_a_busy_loop() -> None:
    """A server out of long-poll slots answers 202 at once; lock must pause between polls."""

    def script(method: str, path: str) -> Tuple[int, str]:
        if method == "PUT":
            return 202, ""
        return 200, "1"

    with StubServer(script) as stub:
        started = time.monotonic()
        with pytest.raises(Timeout):
            with lock(stub.url, "A", timeout=timedelta(seconds=1)):
                pass
        assert time.monotonic() - started < 3
        polls = [r for r in stub.requests if r[0] == "PUT"]
        print(f"{len(polls)} polls in one second")
        assert 2 <= len(polls) <= 20
        # Giving up removed the peer, and with it the pending lock.
        assert stub.requests[-1] == ("DELETE", "/peers/1")
