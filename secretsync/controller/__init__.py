"""The controller: kopf handlers (thin) around the pure ``secretsync.reconcile`` functions.

``main`` parses flags, elects a leader and runs kopf; ``sealed`` reconciles SealedSecrets and
self-heals their Secrets; ``keyring`` owns the sealing keys and the published certificate;
``endpoints`` serves /metrics, health and the cert; ``runtime`` holds what handlers share.
"""
