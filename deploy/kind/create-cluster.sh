#!/usr/bin/env bash
# Create the kind cluster for meshchat and install ingress-nginx (and, when asked, cert-manager).
#
#   deploy/kind/create-cluster.sh                 # cluster + ingress-nginx
#   deploy/kind/create-cluster.sh --cert-manager  # ... + cert-manager (then: skaffold dev -p cert-manager)
#   deploy/kind/create-cluster.sh --delete        # delete the cluster
#
# Needs docker (or podman), kind and kubectl. Versions can be overridden by the environment.
set -euo pipefail

CLUSTER_NAME="${KIND_CLUSTER_NAME:-meshchat}"
INGRESS_NGINX_VERSION="${INGRESS_NGINX_VERSION:-controller-v1.13.3}"
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.19.1}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

with_cert_manager=false
delete=false
for arg in "$@"; do
    case "${arg}" in
        --cert-manager) with_cert_manager=true ;;
        --delete) delete=true ;;
        -h | --help)
            sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "unknown argument: ${arg} (see --help)" >&2
            exit 2
            ;;
    esac
done

for tool in kind kubectl; do
    if ! command -v "${tool}" >/dev/null 2>&1; then
        echo "${tool} is not installed: see https://kind.sigs.k8s.io/ and https://kubernetes.io/docs/tasks/tools/" >&2
        exit 1
    fi
done

if [[ "${delete}" == true ]]; then
    kind delete cluster --name "${CLUSTER_NAME}"
    exit 0
fi

if kind get clusters 2>/dev/null | grep -qx "${CLUSTER_NAME}"; then
    echo "kind cluster ${CLUSTER_NAME} exists already"
else
    kind create cluster --name "${CLUSTER_NAME}" --config "${HERE}/cluster.yaml" --wait 120s
fi
kubectl config use-context "kind-${CLUSTER_NAME}"

echo "installing ingress-nginx ${INGRESS_NGINX_VERSION}"
kubectl apply -f "https://raw.githubusercontent.com/kubernetes/ingress-nginx/${INGRESS_NGINX_VERSION}/deploy/static/provider/kind/deploy.yaml"
# The chart's Ingresses carry a configuration snippet with grpc_ssl_* directives: ingress-nginx applies
# its proxy-ssl-* annotations to HTTP backends only, and the sidecars need the ingress's client
# certificate on GRPCS too (ingress.clientCertificateSnippet). Allow exactly that kind of annotation.
kubectl --namespace ingress-nginx patch configmap ingress-nginx-controller --type merge \
    --patch '{"data":{"allow-snippet-annotations":"true","annotations-risk-level":"Critical"}}'
kubectl --namespace ingress-nginx rollout restart deployment ingress-nginx-controller
kubectl --namespace ingress-nginx rollout status deployment ingress-nginx-controller --timeout=300s
kubectl wait --namespace ingress-nginx --for=condition=ready pod \
    --selector=app.kubernetes.io/component=controller --timeout=300s

if [[ "${with_cert_manager}" == true ]]; then
    echo "installing cert-manager ${CERT_MANAGER_VERSION}"
    kubectl apply -f "https://github.com/cert-manager/cert-manager/releases/download/${CERT_MANAGER_VERSION}/cert-manager.yaml"
    kubectl wait --namespace cert-manager --for=condition=Available deployment --all --timeout=300s
fi

cat <<DONE

kind cluster "${CLUSTER_NAME}" is ready. Next:
  skaffold dev$([[ "${with_cert_manager}" == true ]] && echo " -p cert-manager")
then follow docs/kubernetes.md, section "From nothing to a chat on kind".
DONE
