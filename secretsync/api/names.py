"""Kubernetes' own rules for the names ``seal`` writes, checked offline before the commit.

The API server refuses a Secret whose name is not a DNS subdomain, whose namespace is not a
DNS label, or whose data keys are not config keys -- but only when the controller creates the
Secret, long after the SealedSecret was committed and pushed. ``seal`` checks them first, with
the same rules as ``k8s.io/apimachinery/pkg/util/validation`` (``IsDNS1123Subdomain``,
``IsDNS1123Label``, ``IsConfigMapKey``).

Messages name the field and the rule, never the value (it may be a value put in the wrong
field).
"""

from __future__ import annotations

import re

from secretsync.errors import InvalidInput

DNS_SUBDOMAIN_MAX = 253
DNS_LABEL_MAX = 63

_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS_LABEL = re.compile(rf"{_LABEL}\Z")
_DNS_SUBDOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\Z")
_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+\Z")

SUBDOMAIN_RULE = (
    "a DNS subdomain: lowercase letters, digits, '-' and '.', starting and ending with a "
    f"letter or digit, at most {DNS_SUBDOMAIN_MAX} characters"
)
LABEL_RULE = (
    "a DNS label: lowercase letters, digits and '-', starting and ending with a letter or "
    f"digit, at most {DNS_LABEL_MAX} characters"
)
KEY_RULE = (
    "letters, digits, '-', '_' and '.', not '.' or '..' nor starting with '..', at most "
    f"{DNS_SUBDOMAIN_MAX} characters"
)


def is_dns_subdomain(value: str) -> bool:
    """A valid object name (Secrets, SealedSecrets)."""
    return len(value) <= DNS_SUBDOMAIN_MAX and _DNS_SUBDOMAIN.match(value) is not None


def is_dns_label(value: str) -> bool:
    """A valid namespace name."""
    return len(value) <= DNS_LABEL_MAX and _DNS_LABEL.match(value) is not None


def is_secret_key(value: str) -> bool:
    """A valid key of a Secret's ``data`` (``IsConfigMapKey``)."""
    return (
        len(value) <= DNS_SUBDOMAIN_MAX
        and _CONFIG_KEY.match(value) is not None
        and not value.startswith("..")
        and value != "."
    )


_SHOWN = re.compile(r"[-._a-zA-Z0-9/:]{1,63}\Z")


def shown(key: object) -> str | None:
    """A mapping key fit to quote in a message (short, plain characters), else None: keys are
    names, but one that is not name-shaped may be a value typed in the wrong place."""
    return key if isinstance(key, str) and _SHOWN.match(key) else None


def field(where: str, key: object) -> str:
    """``data.password`` -- or ``data[a key not shown]`` for a key ``shown`` refuses."""
    name = shown(key)
    return f"{where}.{name}" if name is not None else f"{where}[a key not shown]"


def check_names(
    name: str,
    namespace: str,
    namespace_field: str = "metadata.namespace",
    name_field: str = "metadata.name",
) -> None:
    """The API server's rules for a Secret's name and namespace (an empty one is not
    checked: cluster-wide needs none)."""
    if name and not is_dns_subdomain(name):
        raise InvalidInput(f"{name_field} is not a valid Secret name ({SUBDOMAIN_RULE})")
    if namespace and not is_dns_label(namespace):
        raise InvalidInput(f"{namespace_field} is not a valid namespace ({LABEL_RULE})")
