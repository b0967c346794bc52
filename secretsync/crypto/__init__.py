"""The sealing format on bytes, plus key material handling. Knows nothing about Kubernetes."""

from secretsync.crypto.format import scope_label, seal_item, split_item, unseal_item
from secretsync.crypto.pem import (
    certificate_to_pem,
    fingerprint,
    generate_private_key,
    load_certificate_pem,
    load_private_key_pem,
    load_public_key_pem,
    private_key_to_pem,
    self_signed_certificate,
)

__all__ = [
    "certificate_to_pem",
    "fingerprint",
    "generate_private_key",
    "load_certificate_pem",
    "load_private_key_pem",
    "load_public_key_pem",
    "private_key_to_pem",
    "scope_label",
    "seal_item",
    "self_signed_certificate",
    "split_item",
    "unseal_item",
]
