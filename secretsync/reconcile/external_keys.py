"""The keys of one ``dataFrom`` entry, in ESO's order (pure).

For ``dataFrom[].extract`` and ``dataFrom[].find`` ESO takes the names as the provider returns
them (for ``find`` usually paths, ``/`` included) and then:

1. applies the ``rewrite`` operations in order, each to the previous one's output
   (``regexp`` renames keys; ``merge``, from later ESO releases, see ``external_merge``);
2. only if there are no rewrites, converts every character that is not a letter, digit,
   ``-``, ``.`` or ``_`` (``conversionStrategy``: ``Default`` -> ``_``, ``Unicode`` ->
   ``_U%04x_``), two names becoming one key being an error;
3. drops empty keys and checks the rest (at most 253 characters, valid Secret keys).

So a rewrite sees ``path/to/my/secrets/username`` (ESO's documented ``path/to/(.*)`` example
matches), and a rewrite that leaves a ``/`` in a key is an error rather than converted.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from secretsync.errors import InvalidInput
from secretsync.reconcile import go_regexp
from secretsync.reconcile.external_merge import MergeRewrite, merge
from secretsync.reconcile.external_spec import Rewrite

SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
"""What Kubernetes allows as a Secret data key."""

MAX_KEY = 253


def rewrite_keys(
    data: dict[str, bytes], rewrites: Iterable[Rewrite | MergeRewrite], *, what: str
) -> dict[str, bytes]:
    """Apply the ``rewrite[]`` operations in order: ``regexp`` to every key (Go's
    ``ReplaceAllString``), ``merge`` to the whole key set (``external_merge``)."""
    out = data
    for j, rw in enumerate(rewrites):
        if isinstance(rw, MergeRewrite):
            out = merge(rw, out, what=f"{what}.rewrite[{j}].merge")
            continue
        field = f"{what}.rewrite[{j}].regexp.source"
        out = {
            go_regexp.replace_all(rw.source, k, rw.target, what=field): v for k, v in out.items()
        }
    return out


def _keeps(c: str) -> bool:
    """Go's ``unicode.IsLetter || unicode.IsNumber`` or one of ``-._``."""
    return unicodedata.category(c)[0] in "LN" or c in "-._"


def convert_key(name: str, strategy: str) -> str:
    """One name under ``conversionStrategy`` ``Default`` or ``Unicode``."""
    if strategy == "Unicode":
        return "".join(c if _keeps(c) else f"_U{ord(c):04x}_" for c in name)
    return "".join(c if _keeps(c) else "_" for c in name)


def convert_keys(data: dict[str, bytes], strategy: str, *, what: str) -> dict[str, bytes]:
    """``convert_key`` on every key; two names that become one key are an error."""
    out: dict[str, bytes] = {}
    for name, value in data.items():
        key = convert_key(name, strategy)
        if key in out:
            raise InvalidInput(f"{what}: two names become the key {key!r} after conversion")
        out[key] = value
    return out


def checked_keys(data: dict[str, bytes], *, what: str) -> dict[str, bytes]:
    """Empty keys left out (as ESO does); any other invalid key is an error."""
    out: dict[str, bytes] = {}
    for key, value in data.items():
        if key == "":
            continue
        if len(key) > MAX_KEY:
            raise InvalidInput(f"{what}: key {key[:40]!r}... is longer than {MAX_KEY} characters")
        if not SECRET_KEY.match(key):
            raise InvalidInput(f"{what}: key {key!r} (after rewrite) is not a valid Secret key")
        out[key] = value
    return out


def entry_keys(
    data: dict[str, bytes],
    rewrites: tuple[Rewrite | MergeRewrite, ...],
    conversion: str,
    *,
    what: str,
) -> dict[str, bytes]:
    """Names as fetched -> the entry's Secret keys: rewrite, else convert; then check."""
    if rewrites:
        data = rewrite_keys(data, rewrites, what=what)
    else:
        data = convert_keys(data, conversion, what=what)
    return checked_keys(data, what=what)
