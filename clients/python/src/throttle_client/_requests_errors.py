"""The blocking client's exceptions that are also the ``requests`` exceptions 0.5 raised.

The 0.5 client let ``requests`` exceptions through: ``requests.ConnectionError`` and
``requests.Timeout`` for a server it could not reach, ``requests.HTTPError`` for answers it
could not use. Code written for it catches those. The classes here are the library's own
(``ServerUnavailable``, ``TooManyPeers``, ``UnexpectedResponse``) and those ``requests``
exceptions at once, so ``except throttle_client.ServerUnavailable`` and ``except
requests.ConnectionError`` both catch a server that is down. Only the blocking client, which is
built on ``requests``, raises them; ``throttle_client.errors`` stays free of ``requests`` for
the asyncio client.
"""

from __future__ import annotations

import functools
from typing import Callable, ParamSpec, Type, TypeVar

import requests

from .errors import ServerUnavailable, ThrottleError, TooManyPeers, UnexpectedResponse

P = ParamSpec("P")
R = TypeVar("R")

#: The ``requests`` failures that may heal, retried for ``retry_for``: the connection failed,
#: timed out, or broke off in the middle of an answer.
RETRIED = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class ConnectionFailed(ServerUnavailable, requests.ConnectionError):
    """``ServerUnavailable`` after the connection was refused, reset or never made."""


class ConnectTimedOut(ServerUnavailable, requests.ConnectTimeout):
    """``ServerUnavailable`` after connecting took too long (a ``requests.ConnectionError``
    and a ``requests.Timeout``, as 0.5 raised)."""


class ReadTimedOut(ServerUnavailable, requests.ReadTimeout):
    """``ServerUnavailable`` after the answer took too long (a ``requests.Timeout``)."""


class RequestFailed(ServerUnavailable, requests.RequestException):
    """``ServerUnavailable`` for a request that could not be sent and is not retried: a
    malformed URL, a scheme ``requests`` cannot speak."""


class HTTPTooManyPeers(TooManyPeers, requests.HTTPError):
    """``TooManyPeers``, a ``requests.HTTPError`` as 0.5 raised for it."""


class HTTPUnexpectedResponse(UnexpectedResponse, requests.HTTPError):
    """``UnexpectedResponse``, a ``requests.HTTPError`` as 0.5 raised for it."""


def unavailable_class(error: requests.RequestException) -> Type[ServerUnavailable]:
    """The class to raise for a request that failed with ``error`` (one of ``RETRIED``)."""
    if isinstance(error, requests.ConnectTimeout):
        return ConnectTimedOut
    if isinstance(error, requests.Timeout):
        return ReadTimedOut
    return ConnectionFailed


def as_requests_errors(route: Callable[P, R]) -> Callable[P, R]:
    """Make ``route`` raise the ``requests.HTTPError`` kinds of ``TooManyPeers`` and
    ``UnexpectedResponse`` that the shared wire format (``_wire``) raises."""

    @functools.wraps(route)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return route(*args, **kwargs)
        except (TooManyPeers, UnexpectedResponse) as error:
            if isinstance(error, requests.HTTPError):
                raise
            raise _with_http_error(error).with_traceback(error.__traceback__) from None

    return wrapper


def _with_http_error(error: ThrottleError) -> ThrottleError:
    if isinstance(error, TooManyPeers):
        return HTTPTooManyPeers(error.text)
    assert isinstance(error, UnexpectedResponse)
    return HTTPUnexpectedResponse(error.text, error.status_code)
