"""The client against the wire contract, ``contract/wire.toml`` at the repository's root: every
error the server answers maps to the exception this client promises for it, and the headers it
reads and sends are the contract's.

The file is the repository's, not part of the package: run from a source distribution, where it
is absent, this module is skipped; in the repository its absence fails.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Dict, List, Optional, Type

import pytest

from throttle_client import _wire, errors

_ROOT = Path(__file__).resolve().parents[3]
_CONTRACT = _ROOT / "contract" / "wire.toml"

if not _CONTRACT.exists():
    if (_ROOT / "Cargo.toml").exists():
        pytest.fail(f"{_CONTRACT} is missing", pytrace=False)
    pytest.skip("not in the repository: no contract/wire.toml", allow_module_level=True)


def _load() -> Dict[str, Any]:
    with _CONTRACT.open("rb") as file:
        return tomllib.load(file)


CONTRACT = _load()
ERRORS: List[Dict[str, Any]] = CONTRACT["errors"]
HEADERS: Dict[str, Dict[str, str]] = CONTRACT["headers"]

# The exception each error of the contract raises, by its first words. `UnexpectedResponse`
# for the answers the client does not interpret (an unknown route: a wrong base URL).
EXPECTED: Dict[str, Type[Exception]] = {
    "Unknown peer": errors.UnknownPeer,
    "Unknown semaphore": errors.UnknownSemaphore,
    "Invalid count": errors.InvalidCount,
    "Invalid fencing token": errors.InvalidFencingToken,
    "Invalid name": errors.InvalidName,
    "Invalid body": errors.InvalidBody,
    "Invalid duration": errors.InvalidDuration,
    "Invalid request": errors.InvalidRequest,
    "Unauthorized": errors.Unauthorized,
    "Not found": errors.UnexpectedResponse,
    "Count too large": errors.CountTooLarge,
    "Lock hierarchy violation": errors.LockHierarchyViolation,
    "Second pending lock": errors.SecondPendingLock,
    "Lock count change": errors.LockCountChange,
    "Restore conflict": errors.RestoreConflict,
    "Count overflow": errors.CountOverflow,
    "Length required": errors.UnexpectedResponse,
    "Body too large": errors.BodyTooLarge,
    "Too many peers": errors.TooManyPeers,
    "No quorum": errors.UnexpectedResponse,
}

# The errors that may heal when asked again (a cluster member without a quorum, during an
# election): `check_answer` returns them for the retry loop instead of raising them.
TRANSIENT = {"No quorum"}


def _classified(status: int, text: str, headers: Optional[Dict[str, str]] = None) -> Exception:
    """The exception `check_answer` raises for an answer, or returns for a transient one."""
    try:
        failure = _wire.check_answer(status, text, headers)
    except Exception as raised:  # noqa: BLE001 - the exception is the result here
        assert text.split(":")[0] not in TRANSIENT, f"{text!r} raised instead of being retried"
        return raised
    assert failure is not None, f"{status} {text!r} passed as a success"
    assert text.split(":")[0] in TRANSIENT, f"{text!r} returned for a retry"
    return failure


def _header(key: str) -> Dict[str, str]:
    assert key in HEADERS, f"no header {key!r} in {_CONTRACT}"
    return HEADERS[key]


def test_every_error_of_the_contract_has_its_exception() -> None:
    words = [entry["words"] for entry in ERRORS]
    assert sorted(EXPECTED) == sorted(words)


def test_the_clients_prefixes_are_errors_of_the_contract() -> None:
    words = {entry["words"] for entry in ERRORS}
    assert set(errors._BY_PREFIX) <= words


@pytest.mark.parametrize("entry", ERRORS, ids=lambda entry: str(entry["words"]))
@pytest.mark.parametrize("detail", ["", ": with detail\n"])
def test_each_error_raises_its_exception(entry: Dict[str, Any], detail: str) -> None:
    status: int = entry["status"]
    text = entry["words"] + detail
    found = _classified(status, text)
    assert isinstance(found, EXPECTED[entry["words"]]), repr(found)
    error: Any = found
    assert error.status_code == status
    assert error.text.strip() == text.strip()


@pytest.mark.parametrize("entry", ERRORS, ids=lambda entry: str(entry["words"]))
def test_only_unknown_peer_turns_into_a_lost_lock(entry: Dict[str, Any]) -> None:
    peer_state = _header("peer_state")
    headers = {peer_state["name"]: peer_state["value"]}
    expected: Type[Exception] = EXPECTED[entry["words"]]
    if expected is errors.UnknownPeer:
        expected = errors.LockLost
    assert isinstance(_classified(entry["status"], entry["words"], headers), expected)


def test_a_grant_carries_its_fencing_token_in_the_contracts_header() -> None:
    name = _header("fencing_token")["name"]
    assert _wire.parse_acquired(200, "Acquired", {name: "7"}).fencing_token == 7


def test_the_token_is_sent_in_the_contracts_header_and_scheme() -> None:
    authorization = _header("authorization")
    headers = _wire.Request("GET", "/peers/").headers("secret")
    assert headers[authorization["name"]] == f"{authorization['value']} secret"


def test_the_header_constants_are_the_contracts() -> None:
    assert errors.PEER_STATE_HEADER == _header("peer_state")["name"]
    assert _wire.FENCING_TOKEN_HEADER == _header("fencing_token")["name"]
