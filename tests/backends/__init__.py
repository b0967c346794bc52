"""Shared backend tests: ``conformance.BackendConformance`` is subclassed per backend."""
