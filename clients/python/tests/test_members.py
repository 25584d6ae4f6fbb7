"""The members bookkeeping (``_members``): parsing server URLs, following the leader, and the
retry schedule of one request, with a clock of the test's own."""

from __future__ import annotations

from datetime import timedelta
from typing import Dict, List, Optional

import pytest

from throttle_client import ServerUnavailable, UnexpectedResponse
from throttle_client._members import (
    DEFAULT_URL,
    Attempts,
    Members,
    parse_servers,
    servers_key,
)
from throttle_client.errors import Attempt

A, B, C = "http://a:8000", "http://b:8000", "http://c:8000"


def test_servers_are_one_url_a_list_or_urls_with_commas() -> None:
    assert parse_servers(A, {}) == (A,)
    assert parse_servers([A, B, C], {}) == (A, B, C)
    assert parse_servers(f" {A}, {B} ,{C},", {}) == (A, B, C)
    assert parse_servers((A, f"{B},{C}"), {}) == (A, B, C)
    assert servers_key([A, B], {}) == servers_key(f"{A}, {B}", {}) == f"{A},{B}"


def test_no_servers_means_the_environment_or_the_default() -> None:
    assert parse_servers(None, {"THROTTLE_URL": f"{A},{B}"}) == (A, B)
    assert parse_servers(None, {"THROTTLE_URL": " "}) == (DEFAULT_URL,)
    assert parse_servers(None, {}) == (DEFAULT_URL,)


@pytest.mark.parametrize("servers", ["", " , ", []])
def test_no_url_at_all_is_refused(servers: object) -> None:
    with pytest.raises(ValueError):
        parse_servers(servers, {})  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def answer(member: int, leader: Optional[int]) -> Dict[str, str]:
    headers = {"Throttle-Member": str(member)}
    if leader is not None:
        headers["Throttle-Leader"] = str(leader)
    return headers


def test_an_answer_naming_another_leader_moves_to_the_members_not_yet_seen() -> None:
    members = Members([A, B, C])
    # A is member 1 and names 3: B has not answered yet, so it is asked next.
    members.answered(0, answer(1, 3))
    assert members.current == 1
    # B is member 2 and names 3 too: C is the one left.
    members.answered(1, answer(2, 3))
    assert members.current == 2
    members.answered(2, answer(3, 3))
    assert members.current == 2
    # Member 1 leads now: its URL is known, requests go there at once.
    members.answered(2, answer(3, 1))
    assert members.current == 0


def test_answers_without_the_headers_leave_the_member_in_use() -> None:
    members = Members([A, B])
    members.answered(0, {})
    members.answered(0, {"throttle-member": "1"})
    members.answered(0, answer(1, 1))
    members.answered(0, {"Throttle-Member": "1", "Throttle-Leader": "x"})
    assert members.current == 0


def test_a_hint_does_not_lead_back_to_a_member_that_just_failed() -> None:
    clock = Clock()
    members = Members([A, B, C], clock)
    members.answered(0, answer(1, 1))
    members.answered(1, answer(2, 1))
    members.answered(2, answer(3, 1))
    assert members.current == 0
    members.failed(0)  # The leader is killed; the others name it until they elect another.
    assert members.current == 1
    members.answered(1, answer(2, 1))
    assert members.current == 1
    clock.now += 5.0  # Long after: member 1 is back and leads again.
    members.answered(1, answer(2, 1))
    assert members.current == 0


def test_a_failure_of_a_member_not_in_use_moves_nothing() -> None:
    members = Members([A, B, C])
    members.failed(0)
    assert members.current == 1
    members.failed(0)  # A late failure of a request that went to A.
    assert members.current == 1


def test_a_single_server_is_never_left() -> None:
    members = Members([A])
    members.failed(0)
    members.answered(0, answer(1, 2))
    assert members.current == 0


def refused(url: str) -> ServerUnavailable:
    return ServerUnavailable([Attempt(url, "connection refused")], timedelta(seconds=1))


def run(members: Members, retry_for: timedelta, failures: Dict[str, Exception]) -> Exception:
    """Fails every attempt with the member's failure, 1 ms each; the request's error."""
    clock = Clock()
    attempts = Attempts(members, retry_for, clock)
    asked: List[str] = []
    while True:
        url = members.urls[attempts.target()]
        asked.append(url)
        clock.now += 0.001
        try:
            pause = attempts.failed(attempts.target(), failures[url])
        except Exception as error:  # noqa: BLE001 - the request's error is what is tested.
            error.asked = asked  # type: ignore[attr-defined]
            error.gave_up_at = clock.now  # type: ignore[attr-defined]
            return error
        clock.now += pause


def test_the_error_names_every_member_and_comes_once_retry_for_is_spent() -> None:
    no_quorum = UnexpectedResponse("No quorum: no leader elected within 3s", 503)
    failures: Dict[str, Exception] = {A: refused(A), B: refused(B), C: no_quorum}
    for _ in range(50):
        error = run(Members([A, B, C]), timedelta(seconds=1), failures)
        assert isinstance(error, ServerUnavailable)
        assert error.attempts == [
            Attempt(A, "connection refused"),
            Attempt(B, "connection refused"),
            Attempt(C, "no quorum (no leader elected within 3s)"),
        ]
        assert 1.0 <= error.gave_up_at <= 1.01  # type: ignore[attr-defined]
        assert str(error).startswith("no member reachable within 1 s (http://a:8000: ")


def test_every_member_is_asked_once_even_without_retry_for() -> None:
    failures: Dict[str, Exception] = {A: refused(A), B: refused(B), C: refused(C)}
    error = run(Members([A, B, C]), timedelta(0), failures)
    assert error.asked == [A, B, C]  # type: ignore[attr-defined]


def test_a_server_error_answered_last_is_the_error() -> None:
    failures: Dict[str, Exception] = {A: refused(A), B: UnexpectedResponse("Oops", 500)}
    error = run(Members([A, B]), timedelta(0), failures)
    assert isinstance(error, UnexpectedResponse) and error.status_code == 500


def test_pauses_come_only_after_a_round_of_all_members() -> None:
    clock = Clock()
    members = Members([A, B, C])
    attempts = Attempts(members, timedelta(seconds=10), clock)
    assert attempts.failed(0, refused(A)) == 0.0
    assert attempts.failed(1, refused(B)) == 0.0
    assert 0.025 <= attempts.failed(2, refused(C)) <= 0.05
    assert attempts.target() == 0
