"""Copy the ExternalSecret CRD's spec schema into the ClusterExternalSecret CRD's
``spec.externalSecretSpec`` (text copy: comments and YAML anchors kept), so the two never
differ (``tests/unit/test_cluster_external.py`` checks). Run after editing
``externalsecret.yaml``; ``make chart-crds`` runs it first.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
SPEC = "            spec:"
STATUS = "            status:"
EMBED = "                externalSecretSpec:"
EMBED_END = "                externalSecretName:"


def main() -> None:
    source = (HERE / "externalsecret.yaml").read_text().split("\n")
    block = source[source.index(SPEC) + 1:source.index(STATUS)]
    target_path = HERE / "clusterexternalsecret.yaml"
    target = target_path.read_text().split("\n")
    start, end = target.index(EMBED), target.index(EMBED_END)
    body = ["    " + line if line else line for line in block]
    new = [*target[:start + 1], *body, *target[end:]]
    if new != target:
        target_path.write_text("\n".join(new))
        print(f"updated {target_path.name}")


if __name__ == "__main__":
    main()
