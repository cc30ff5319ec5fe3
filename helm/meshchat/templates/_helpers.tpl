{{/* vim: set filetype=mustache: */}}
{{/*
Names, labels, images and identities.
*/}}

{{/* The chart's name, truncated to 63 characters (DNS label). */}}
{{- define "meshchat.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every resource name: the release name, plus the chart's name when the release
name does not already contain it. Truncated so that "<fullname>-postgresql-hl" stays a DNS label.
*/}}
{{- define "meshchat.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "meshchat.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The namespace of every resource. */}}
{{- define "meshchat.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The name of one component's resources: (dict "ctx" $ "component" "auth"). */}}
{{- define "meshchat.componentName" -}}
{{- printf "%s-%s" (include "meshchat.fullname" .ctx) .component -}}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "auth"). */}}
{{- define "meshchat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "meshchat.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Standard labels of one component: (dict "ctx" $ "component" "auth"). */}}
{{- define "meshchat.labels" -}}
{{ include "meshchat.selectorLabels" . }}
helm.sh/chart: {{ include "meshchat.chart" .ctx }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: meshchat
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Standard metadata (name, namespace, labels, common annotations): (dict "ctx" $ "component" "auth" "name" "...optional"). */}}
{{- define "meshchat.metadata" -}}
name: {{ default (include "meshchat.componentName" .) .name }}
namespace: {{ include "meshchat.namespace" .ctx }}
labels:
  {{- include "meshchat.labels" . | nindent 2 }}
{{- if or .ctx.Values.commonAnnotations .annotations }}
annotations:
  {{- with .ctx.Values.commonAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- with .annotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* An image reference from registry, repository, tag or digest: (dict "image" .Values.auth.image "default" .Chart.AppVersion). */}}
{{- define "meshchat.image" -}}
{{- $repo := .image.repository -}}
{{- if .image.registry -}}
{{- $repo = printf "%s/%s" .image.registry .image.repository -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repo .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .default .image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/* The pod-level security context ("restricted" Pod Security Standard): (dict "ctx" $ "fsGroupChangePolicy" "...optional, replaces the value"). */}}
{{- define "meshchat.podSecurityContext" -}}
{{- $sc := .ctx.Values.podSecurityContext -}}
runAsNonRoot: true
runAsUser: {{ $sc.runAsUser }}
runAsGroup: {{ $sc.runAsGroup }}
fsGroup: {{ $sc.fsGroup }}
fsGroupChangePolicy: {{ default $sc.fsGroupChangePolicy .fsGroupChangePolicy }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The security context of every container, the sidecars and init containers included. */}}
{{- define "meshchat.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* A component's workload identity, the DNS SAN its mesh certificate carries: (dict "ctx" $ "component" "chat"). */}}
{{- define "meshchat.identity" -}}
{{- printf "%s.%s.%s" (include "meshchat.componentName" .) (include "meshchat.namespace" .ctx) .ctx.Values.mesh.trustDomain -}}
{{- end -}}

{{/* The fully qualified DNS name of a component's Service: (dict "ctx" $ "component" "auth"). */}}
{{- define "meshchat.serviceHost" -}}
{{- printf "%s.%s.svc.%s" (include "meshchat.componentName" .) (include "meshchat.namespace" .ctx) .ctx.Values.clusterDomain -}}
{{- end -}}

{{/* The DNS name of a component's headless Service, which resolves to every ready pod. */}}
{{- define "meshchat.headlessHost" -}}
{{- printf "%s-headless.%s.svc.%s" (include "meshchat.componentName" .) (include "meshchat.namespace" .ctx) .ctx.Values.clusterDomain -}}
{{- end -}}

{{/*
The same name fully qualified (a trailing dot), as Envoy's STRICT_DNS clusters resolve it: with
the pods' ndots:5 a name without the dot would first be tried with every search domain on each
refresh.
*/}}
{{- define "meshchat.headlessFqdn" -}}
{{- printf "%s." (include "meshchat.headlessHost" .) -}}
{{- end -}}

{{/* The DNS SANs of a component's mesh certificate, as a YAML list: identity first, then the Service names for servers. */}}
{{- define "meshchat.meshDnsNames" -}}
{{- $name := include "meshchat.componentName" . -}}
{{- $ns := include "meshchat.namespace" .ctx -}}
- {{ include "meshchat.identity" . }}
{{- if has .component (list "auth" "chat") }}
- {{ $name }}
- {{ printf "%s.%s" $name $ns }}
- {{ printf "%s.%s.svc" $name $ns }}
- {{ include "meshchat.serviceHost" . }}
{{- end }}
{{- end -}}

{{/* The Secret that holds a component's mesh certificate (tls.crt, tls.key, ca.crt): (dict "ctx" $ "component" "auth"). */}}
{{- define "meshchat.meshSecretName" -}}
{{- printf "%s-mesh-tls" (include "meshchat.componentName" .) -}}
{{- end -}}

{{/* The Secret with the TLS certificate of the ingress hosts. */}}
{{- define "meshchat.ingressTlsSecretName" -}}
{{- default (printf "%s-ingress-tls" (include "meshchat.fullname" .)) .Values.ingress.tls.existingSecret -}}
{{- end -}}

{{/* The ServiceAccount of a component: (dict "ctx" $ "component" "auth"). */}}
{{- define "meshchat.serviceAccountName" -}}
{{- $sa := index .ctx.Values .component "serviceAccount" -}}
{{- if $sa.create -}}
{{- default (include "meshchat.componentName" .) $sa.name -}}
{{- else -}}
{{- default "default" $sa.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret and key holding a component's MESHCHAT_DATABASE_URL: (dict "ctx" $ "component" "auth") -> "name key". */}}
{{- define "meshchat.databaseUrlSecret" -}}
{{- $ext := index .ctx.Values.externalDatabase .component -}}
{{- if and (not .ctx.Values.postgresql.enabled) (not .ctx.Values.cloudnativePg.enabled) $ext.existingSecret -}}
{{- printf "%s %s" $ext.existingSecret $ext.existingSecretKey -}}
{{- else -}}
{{- printf "%s-database %s" (include "meshchat.componentName" .) "url" -}}
{{- end -}}
{{- end -}}

{{/* The Secret with the bundled PostgreSQL's passwords: postgresql.existingSecret, else the chart's. */}}
{{- define "meshchat.postgresql.secretName" -}}
{{- default (printf "%s-postgresql" (include "meshchat.fullname" .)) .Values.postgresql.existingSecret -}}
{{- end -}}

{{/* The CloudNativePG Cluster's name. */}}
{{- define "meshchat.cnpg.name" -}}
{{- printf "%s-pg" (include "meshchat.fullname" .) -}}
{{- end -}}

{{/* The CloudNativePG Cluster's read-write Service (always the primary), by a name its server certificate carries. */}}
{{- define "meshchat.cnpg.host" -}}
{{- printf "%s-rw.%s.svc" (include "meshchat.cnpg.name" .) (include "meshchat.namespace" .) -}}
{{- end -}}

{{/* The host name of the bundled PostgreSQL's Service. */}}
{{- define "meshchat.postgresql.host" -}}
{{- printf "%s-postgresql.%s.svc.%s" (include "meshchat.fullname" .) (include "meshchat.namespace" .) .Values.clusterDomain -}}
{{- end -}}

{{/* The Secret with the JWT signing keys. */}}
{{- define "meshchat.jwtSecretName" -}}
{{- default (printf "%s-auth-jwt" (include "meshchat.fullname" .)) .Values.auth.jwt.existingSecret -}}
{{- end -}}

{{/* "host:port" of an address value {address, port}; IPv6 literals get brackets. */}}
{{- define "meshchat.hostPort" -}}
{{- if contains ":" (toString .address) -}}
{{- printf "[%s]:%v" .address .port -}}
{{- else -}}
{{- printf "%s:%v" .address .port -}}
{{- end -}}
{{- end -}}

{{/* The names of a component's sidecar listeners, as a YAML list: the outbound one only where the component calls another (chat). */}}
{{- define "meshchat.sidecarListeners" -}}
{{- $names := list "inbound" "health" "metrics" "admin" -}}
{{- if hasKey .sidecar "outbound" -}}
{{- $names = append $names "outbound" -}}
{{- end -}}
{{- toYaml $names -}}
{{- end -}}

{{/*
The gRPC API of each service, as a YAML mapping: the services that the ways in route by name;
the long-lived streaming methods, which get no route timeout, only an idle timeout; and the
idempotent methods (reads without side effects), which Envoy may retry on another pod after a
reset, CANCELLED (a stopping pod answers calls it got as it stopped so) or UNAVAILABLE.
*/}}
{{- define "meshchat.grpcApi" -}}
auth:
  services:
    - meshchat.auth.v1.UserService
    - meshchat.auth.v1.AuthService
    - meshchat.auth.v1.AccessService
  # Not among the services: the ways in do not route it by name (only chat may call it).
  streaming:
    - /meshchat.auth.v1.AccountEventService/Watch
  idempotent:
    - /meshchat.auth.v1.UserService/GetUser
    - /meshchat.auth.v1.UserService/ListUsers
    - /meshchat.auth.v1.UserService/LookupUsers
    - /meshchat.auth.v1.AccessService/Check
    - /meshchat.auth.v1.AuthService/GetJwks
chat:
  services:
    - meshchat.chat.v1.ChatService
  streaming:
    - /meshchat.chat.v1.ChatService/Connect
  idempotent:
    - /meshchat.chat.v1.ChatService/GetChat
    - /meshchat.chat.v1.ChatService/ListChats
    - /meshchat.chat.v1.ChatService/ListMessages
    # Moves a read position forward only (the larger of old and new): a repeat changes nothing.
    - /meshchat.chat.v1.ChatService/MarkRead
{{- end -}}


{{/*
The NetworkPolicy peers of the ways in that are on, as a YAML list: who may reach the sidecars'
mTLS listeners from outside the release (ingress-nginx's controller, the Gateway's proxies, the
chart's edge Envoy).
*/}}
{{- define "meshchat.wayInPeers" -}}
{{- $peers := list -}}
{{- if .Values.ingress.enabled -}}
{{- $peers = concat $peers .Values.networkPolicy.ingressControllerPeers -}}
{{- end -}}
{{- if .Values.gateway.enabled -}}
{{- $peers = concat $peers .Values.networkPolicy.gatewayPeers -}}
{{- end -}}
{{- if .Values.edge.enabled -}}
{{- $peers = append $peers (dict "podSelector" (dict "matchLabels" (include "meshchat.selectorLabels" (dict "ctx" . "component" "edge") | fromYaml))) -}}
{{- end -}}
{{- toYaml $peers -}}
{{- end -}}
