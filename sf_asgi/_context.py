"""The handler's second argument (SPEC §3)."""

from __future__ import annotations

import time
from typing import Any

from ._config import Settings

# IAM tokens live 12 hours; `expires_in` counts down from when the instance started [choice].
TOKEN_LIFETIME = 43_200
# With the timeout off, the deadline is the longest a platform invocation may run (1 hour) [choice].
NO_TIMEOUT_DEADLINE = 3_600.0


class Context:
    """The invocation context.

    Its instance attributes are exactly the platform's, so that the documented
    `json.dumps(context, default=vars)` prints the same ten keys; anything else lives on the class.
    """

    def __init__(
        self,
        request_id: str,
        function_name: str,
        function_version: str,
        log_group_name: str,
        memory_limit_in_mb: int,
        deadline_ms: int,
        token: dict[str, Any] | None,
    ) -> None:
        self.request_id = request_id
        self.aws_request_id = request_id
        self.function_name = function_name
        self.invoked_function_arn = function_name
        self.function_version = function_version
        self.log_stream_name = function_version
        self.log_group_name = log_group_name
        self.memory_limit_in_mb = memory_limit_in_mb
        self.deadline_ms = deadline_ms
        self.token = token

    def get_remaining_time_in_millis(self) -> int:
        return self.deadline_ms - int(time.time() * 1000)

    def __repr__(self) -> str:
        return f"Context(request_id={self.request_id!r}, function_name={self.function_name!r})"


def make_token(iam_token: str, issued_at: float, now: float) -> dict[str, Any] | None:
    if not iam_token:
        return None
    expires_in = max(0, TOKEN_LIFETIME - int(now - issued_at))
    return {"access_token": iam_token, "expires_in": expires_in, "token_type": "Bearer"}


def make_context(settings: Settings, request_id: str, started: float, issued_at: float) -> Context:
    """The context of an invocation whose clock started at `started` (epoch seconds)."""
    budget = settings.timeout or NO_TIMEOUT_DEADLINE
    return Context(
        request_id,
        settings.function_name,
        settings.function_version,
        settings.log_group,
        settings.memory_limit_mb,
        int((started + budget) * 1000),
        make_token(settings.iam_token, issued_at, started) if settings.iam_token else None,
    )
