"""Names shared by every layer: API group, versions, kinds, labels and annotations.

Kept in one place so the CLI, the controller, the CRDs and the tests agree on spelling.
"""

from __future__ import annotations

GROUP = "secretsync.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

BITNAMI_GROUP = "bitnami.com"
BITNAMI_API_VERSION = f"{BITNAMI_GROUP}/v1alpha1"

KIND_SEALED = "SealedSecret"
KIND_EXTERNAL = "ExternalSecret"
KIND_STORE = "SecretStore"
KIND_CLUSTER_STORE = "ClusterSecretStore"
KIND_CLUSTER_EXTERNAL = "ClusterExternalSecret"

PLURAL_SEALED = "sealedsecrets"
PLURAL_EXTERNAL = "externalsecrets"
PLURAL_STORE = "secretstores"
PLURAL_CLUSTER_STORE = "clustersecretstores"
PLURAL_CLUSTER_EXTERNAL = "clusterexternalsecrets"

# --- annotations on SealedSecrets -------------------------------------------------------
ANN_SCOPE = f"{GROUP}/scope"  # strict | namespace-wide | cluster-wide
ANN_KEY_FINGERPRINT = f"{GROUP}/key-fingerprint"  # sha256 hex of the DER public key
BITNAMI_ANN_CLUSTER_WIDE = "sealedsecrets.bitnami.com/cluster-wide"
BITNAMI_ANN_NAMESPACE_WIDE = "sealedsecrets.bitnami.com/namespace-wide"

# --- managed Secrets ----------------------------------------------------------------------
ANN_MANAGED = f"{GROUP}/managed"  # "true" hands a pre-existing Secret over to us
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "secretsync"
# the label selector of every Secret we manage: the Secret watch and the resync's LIST
MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY_VALUE}"
ANN_DATA_HASH = f"{GROUP}/data-hash"
ANN_FORCE_SYNC = f"{GROUP}/force-sync"
# The ExternalSecret data hash is an HMAC under a key only the controller holds: Secret
# "<controller-name>-hash-key", key "hmac.key" (32 random bytes), in its own namespace.
HASH_KEY_SECRET_SUFFIX = "-hash-key"
HASH_KEY_DATA_KEY = "hmac.key"
HASH_KEY_BYTES = 32

# --- sealing keys --------------------------------------------------------------------------
LABEL_SEALING_KEY = f"{GROUP}/sealing-key"  # value "active" (or "compromised" to skip)
BITNAMI_LABEL_SEALING_KEY = "sealedsecrets.bitnami.com/sealed-secrets-key"
# The controller publishes its newest certificate in ConfigMap "<controller-name>-cert",
# key "cert.pem", in its own namespace (readable by every authenticated user).
CERT_CONFIGMAP_SUFFIX = "-cert"
CERT_CONFIGMAP_KEY = "cert.pem"
DEFAULT_CONTROLLER_NAMESPACE = "secretsync"
DEFAULT_CONTROLLER_NAME = "secretsync-controller"

SCOPE_STRICT = "strict"
SCOPE_NAMESPACE = "namespace-wide"
SCOPE_CLUSTER = "cluster-wide"
SCOPES = (SCOPE_STRICT, SCOPE_NAMESPACE, SCOPE_CLUSTER)
