"""Errors of the AuthZEN transport (spec/authzen-api.md §8.4)."""

from __future__ import annotations


class AuthZENError(Exception):
    """A problem with the request or its processing: never a deny (AZ-7, AZ-51)."""

    status = 500
    error = "server_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(AuthZENError):
    """AZ-44 and the conformance reading of §8.2: malformed or invalid request → 400."""

    status = 400
    error = "invalid_request"


class Unauthenticated(AuthZENError):
    """AZ-52: 401 with a WWW-Authenticate challenge."""

    status = 401
    error = "unauthorized"


class Forbidden(AuthZENError):
    """§8.4: the caller is authenticated but may not use this API."""

    status = 403
    error = "forbidden"
