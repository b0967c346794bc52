"""secretsync: sealed secrets and external secrets for GitOps clusters, in one package.

Kept import-free on purpose: `secretsync seal` must start fast, so nothing heavy is
imported until a command needs it.
"""

__version__ = "0.1.0"
