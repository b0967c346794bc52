"""The sealing format on bytes, plus key material handling. Knows nothing about Kubernetes."""

from secretsync.crypto.format import scope_label, seal_item, unseal_item

__all__ = ["scope_label", "seal_item", "unseal_item"]
