#!/usr/bin/env bash
# Create the kind cluster for meshchat (and, when asked, install more). The default way in is the
# chart's edge Envoy on the host's port 443 (cluster.yaml); no ingress controller is needed.
#
#   deploy/kind/create-cluster.sh                   # the cluster, port 443 to the edge's NodePort
#   deploy/kind/create-cluster.sh --ingress-nginx   # opt-in: ingress-nginx with configuration snippets
#                                                   #     allowed (risk level Critical; see the warning
#                                                   #     in docs/kubernetes.md), then: skaffold dev -p ingress-nginx
#   deploy/kind/create-cluster.sh --cert-manager    # ... + cert-manager (then: skaffold dev -p cert-manager)
#   deploy/kind/create-cluster.sh --metrics-server  # ... + metrics-server, for chat's autoscaler (skaffold run)
#   deploy/kind/create-cluster.sh --preload-images  # ... + pull the images the chart runs and load them
#                                                   #     into the node, so no pod waits for a pull
#   deploy/kind/create-cluster.sh --delete          # delete the cluster
#
# Needs docker (or podman), kind v0.24 or later (its kindnet enforces NetworkPolicies), kubectl,
# and helm for --preload-images. The node must run Kubernetes 1.30 or later (native sidecars, the
# preStop sleep action); KIND_NODE_IMAGE chooses another node image. Versions can be overridden by
# the environment.
set -euo pipefail

CLUSTER_NAME="${KIND_CLUSTER_NAME:-meshchat}"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-}"
INGRESS_NGINX_VERSION="${INGRESS_NGINX_VERSION:-controller-v1.13.7}"
CERT_MANAGER_VERSION="${CERT_MANAGER_VERSION:-v1.19.1}"
METRICS_SERVER_VERSION="${METRICS_SERVER_VERSION:-v0.8.1}"
MIN_KIND_VERSION="0.24.0"
MIN_KUBERNETES_MINOR=30
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHART="${HERE}/../../helm/meshchat"

with_cert_manager=false
with_ingress_nginx=false
with_metrics_server=false
preload_images=false
delete=false
for arg in "$@"; do
    case "${arg}" in
        --cert-manager) with_cert_manager=true ;;
        --ingress-nginx) with_ingress_nginx=true ;;
        --metrics-server) with_metrics_server=true ;;
        --preload-images) preload_images=true ;;
        --delete) delete=true ;;
        -h | --help)
            # The comment block at the top of this file, without its "# ".
            awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
            exit 0
            ;;
        *)
            echo "unknown argument: ${arg} (see --help)" >&2
            exit 2
            ;;
    esac
done

required=(kind kubectl)
if [[ "${preload_images}" == true ]]; then
    required+=(docker helm)
fi
for tool in "${required[@]}"; do
    if ! command -v "${tool}" >/dev/null 2>&1; then
        echo "${tool} is not installed: see docs/kubernetes.md, section \"From nothing to a chat on kind\"" >&2
        exit 1
    fi
done

# Whether version $1 is at least $2 (dotted numbers).
at_least() {
    [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" == "$2" ]]
}

kind_version="$(kind version | sed -n 's/^kind v\([0-9][0-9.]*\).*/\1/p')"
if [[ -z "${kind_version}" ]] || ! at_least "${kind_version}" "${MIN_KIND_VERSION}"; then
    echo "kind ${kind_version:-of unknown version} is too old: meshchat needs kind v${MIN_KIND_VERSION} or later," >&2
    echo "whose kindnet enforces the chart's NetworkPolicies (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)" >&2
    exit 1
fi

if [[ "${delete}" == true ]]; then
    kind delete cluster --name "${CLUSTER_NAME}"
    exit 0
fi

if kind get clusters 2>/dev/null | grep -qx "${CLUSTER_NAME}"; then
    echo "kind cluster ${CLUSTER_NAME} exists already"
else
    image_args=()
    if [[ -n "${KIND_NODE_IMAGE}" ]]; then
        image_args=(--image "${KIND_NODE_IMAGE}")
    fi
    config="${HERE}/cluster.yaml"
    if [[ "${with_ingress_nginx}" == true ]]; then
        config="${HERE}/cluster-ingress-nginx.yaml"
    fi
    kind create cluster --name "${CLUSTER_NAME}" --config "${config}" "${image_args[@]}" --wait 120s
fi
kubectl config use-context "kind-${CLUSTER_NAME}"

server_minor="$(kubectl get --raw /version | tr -d '\n' | sed -n 's/.*"minor": *"\([0-9]*\).*/\1/p')"
if [[ -z "${server_minor}" ]] || ((server_minor < MIN_KUBERNETES_MINOR)); then
    echo "the cluster runs Kubernetes 1.${server_minor:-?}: meshchat needs 1.${MIN_KUBERNETES_MINOR} or later" >&2
    echo "(native sidecars, the preStop sleep action); set KIND_NODE_IMAGE to a newer kindest/node image" >&2
    exit 1
fi

if [[ "${preload_images}" == true ]]; then
    # The images the chart pulls (Envoy, PostgreSQL), not the two that skaffold builds and loads.
    images="$(helm template meshchat "${CHART}" | sed -n 's/^ *image: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' | sort -u | grep -v '^meshchat-')"
    for image in ${images}; do
        echo "pre-loading ${image}"
        docker pull "${image}"
        kind load docker-image "${image}" --name "${CLUSTER_NAME}"
    done
fi

if [[ "${with_ingress_nginx}" == true ]]; then
    echo "installing ingress-nginx ${INGRESS_NGINX_VERSION}"
    cat >&2 <<'WARNING'
WARNING: ingress-nginx is retired (March 2026) and gets no more security fixes. The chart's Ingresses
need a configuration snippet (ingress.clientCertificateSnippet), so this controller is told to
allow snippet annotations at the "Critical" risk level: anyone who may create an Ingress in this
cluster can then inject nginx configuration (the class of annotation behind CVE-2021-25742 and
CVE-2025-1974). Use this on a throwaway local cluster only; the default way in is the edge Envoy.
WARNING
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
fi

if [[ "${with_cert_manager}" == true ]]; then
    echo "installing cert-manager ${CERT_MANAGER_VERSION}"
    kubectl apply -f "https://github.com/cert-manager/cert-manager/releases/download/${CERT_MANAGER_VERSION}/cert-manager.yaml"
    kubectl wait --namespace cert-manager --for=condition=Available deployment --all --timeout=300s
fi

if [[ "${with_metrics_server}" == true ]]; then
    echo "installing metrics-server ${METRICS_SERVER_VERSION}"
    kubectl apply -f "https://github.com/kubernetes-sigs/metrics-server/releases/download/${METRICS_SERVER_VERSION}/components.yaml"
    # kind's kubelets serve self-signed certificates, which metrics-server rejects unless told not to
    # verify them (acceptable on a local cluster only). Applying the manifest resets the arguments.
    kubectl --namespace kube-system patch deployment metrics-server --type json \
        --patch '[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--kubelet-insecure-tls"}]'
    kubectl --namespace kube-system rollout status deployment metrics-server --timeout=300s
fi

cat <<DONE

kind cluster "${CLUSTER_NAME}" is ready. Next:
  skaffold dev$([[ "${with_cert_manager}" == true ]] && echo " -p cert-manager")$([[ "${with_ingress_nginx}" == true ]] && echo " -p ingress-nginx")
then follow docs/kubernetes.md, section "From nothing to a chat on kind".
DONE
