"""Helpers for queue adapters (ours and third parties'): what every implementation of the
ports repeats, written once. Adapters import these; the core itself does not."""

from typing import TYPE_CHECKING

from usvc_core.adapter_support.attempts import current_attempt
from usvc_core.adapter_support.base import QueueBase
from usvc_core.adapter_support.fleet import (
    GONE_AFTER_HEARTBEATS,
    check_action_name,
    check_worker_record,
    gone_since,
)
from usvc_core.adapter_support.limits import checked_limits
from usvc_core.adapter_support.payload import decode_payload
from usvc_core.adapter_support.stats import capped_counts, check_count_limit
from usvc_core.lazy_names import lazy_names

if TYPE_CHECKING:
    from usvc_core.adapter_support.admin_checks import (
        MAX_MINUTES,
        MAX_PAGE,
        check_filter,
        check_minutes,
        check_page_limit,
        check_retry_target,
    )
    from usvc_core.adapter_support.cursors import decode_cursor, encode_cursor

__all__ = [
    "GONE_AFTER_HEARTBEATS",
    "MAX_MINUTES",
    "MAX_PAGE",
    "QueueBase",
    "capped_counts",
    "check_action_name",
    "check_count_limit",
    "check_filter",
    "check_minutes",
    "check_page_limit",
    "check_retry_target",
    "check_worker_record",
    "checked_limits",
    "current_attempt",
    "decode_cursor",
    "decode_payload",
    "encode_cursor",
    "gone_since",
]

# The operator port's checks and page cursors, imported on first use (PEP 562): only the
# CLI, the admin API and the dashboard call them, never a worker.
__getattr__, __dir__ = lazy_names(
    __name__,
    {
        **dict.fromkeys(
            (
                "MAX_MINUTES",
                "MAX_PAGE",
                "check_filter",
                "check_minutes",
                "check_page_limit",
                "check_retry_target",
            ),
            "usvc_core.adapter_support.admin_checks",
        ),
        **dict.fromkeys(("decode_cursor", "encode_cursor"), "usvc_core.adapter_support.cursors"),
    },
)
