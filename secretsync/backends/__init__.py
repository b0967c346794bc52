"""Pluggable secret backends: one protocol (``base``), an entry-point registry, one module each."""
