"""The one clock format of the project: RFC 3339 in UTC, as Kubernetes writes times.

Status conditions, restart annotations and Events use whole seconds (``metav1.Time``);
Leases use microseconds (``metav1.MicroTime``). Every module formats times through here.
"""

from __future__ import annotations

import datetime as _dt


def now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def rfc3339(when: _dt.datetime | None = None) -> str:
    """``metav1.Time``: ``2026-12-06T01:17:01Z`` (``when`` defaults to now)."""
    return (when or now()).astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(when: _dt.datetime | None = None) -> str:
    """``metav1.MicroTime``: ``2026-12-06T01:17:01.123456Z``."""
    return (when or now()).astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(text: object) -> _dt.datetime | None:
    """A time Kubernetes wrote (either form), or None when it is not one."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
