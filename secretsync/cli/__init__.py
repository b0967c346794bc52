"""The ``secretsync`` command line: thin commands over crypto/keys/sealing (see main.py)."""
