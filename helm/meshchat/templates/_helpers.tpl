{{/* vim: set filetype=mustache: */}}
{{/*
Names, labels, images, identities and the checks of impossible values.
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

{{/* The pod-level security context ("restricted" Pod Security Standard). */}}
{{- define "meshchat.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
fsGroup: {{ .Values.podSecurityContext.fsGroup }}
fsGroupChangePolicy: {{ .Values.podSecurityContext.fsGroupChangePolicy }}
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
{{- if and (not .ctx.Values.postgresql.enabled) $ext.existingSecret -}}
{{- printf "%s %s" $ext.existingSecret $ext.existingSecretKey -}}
{{- else -}}
{{- printf "%s-database %s" (include "meshchat.componentName" .) "url" -}}
{{- end -}}
{{- end -}}

{{/* The Secret with the bundled PostgreSQL's passwords. */}}
{{- define "meshchat.postgresql.secretName" -}}
{{- printf "%s-postgresql" (include "meshchat.fullname" .) -}}
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

{{/*
Checks of values that the schema cannot express. Each failure names the values to change.
*/}}
{{- define "meshchat.validateValues" -}}
{{- $errors := list -}}
{{- range $component := list "auth" "chat" -}}
{{- $v := index $.Values $component -}}
{{- range $what := list "listen" "metricsListen" -}}
{{- $addr := toString (index $v $what).address -}}
{{- if not (or (hasPrefix "127." $addr) (eq $addr "::1") (eq $addr "localhost")) -}}
{{- $errors = append $errors (printf "%s.%s.address is %q: the app must listen on a loopback address only (127.0.0.1); its sidecar is the pod's way in" $component $what $addr) -}}
{{- end -}}
{{- end -}}
{{- $adminAddr := toString $v.sidecar.admin.address -}}
{{- if not (or (hasPrefix "127." $adminAddr) (eq $adminAddr "::1")) -}}
{{- $errors = append $errors (printf "%s.sidecar.admin.address is %q: the Envoy admin interface must stay on a loopback address" $component $adminAddr) -}}
{{- end -}}
{{- $ports := dict -}}
{{- $named := list (list "listen.port" $v.listen.port) (list "metricsListen.port" $v.metricsListen.port) (list "sidecar.inbound.port" $v.sidecar.inbound.port) (list "sidecar.health.port" $v.sidecar.health.port) (list "sidecar.metrics.port" $v.sidecar.metrics.port) (list "sidecar.admin.port" $v.sidecar.admin.port) -}}
{{- if eq $component "chat" -}}
{{- $named = append $named (list "sidecar.outbound.port" $v.sidecar.outbound.port) -}}
{{- end -}}
{{- range $named -}}
{{- $key := toString (index . 1) -}}
{{- if hasKey $ports $key -}}
{{- $errors = append $errors (printf "%s.%s and %s.%s are both %s: the containers of one pod share its ports" $component (get $ports $key) $component (index . 0) $key) -}}
{{- else -}}
{{- $_ := set $ports $key (index . 0) -}}
{{- end -}}
{{- end -}}
{{- if and $v.pdb.create $v.pdb.minAvailable (not (kindIs "invalid" $v.pdb.maxUnavailable)) (ne (toString $v.pdb.maxUnavailable) "") -}}
{{- $errors = append $errors (printf "%s.pdb: set minAvailable or maxUnavailable, not both" $component) -}}
{{- end -}}
{{- if le (int $v.terminationGracePeriodSeconds) (int $v.gracePeriodSeconds) -}}
{{- $errors = append $errors (printf "%s.terminationGracePeriodSeconds (%v) must exceed %s.gracePeriodSeconds (%v), or Kubernetes kills the service before it has stopped" $component $v.terminationGracePeriodSeconds $component $v.gracePeriodSeconds) -}}
{{- end -}}
{{- end -}}
{{- $dirs := list (list "mesh.envoy.configDir" .Values.mesh.envoy.configDir) (list "mesh.envoy.certDir" .Values.mesh.envoy.certDir) (list "edge.tlsDir" .Values.edge.tlsDir) -}}
{{- range $a := $dirs -}}
{{- range $b := $dirs -}}
{{- if and (ne (index $a 0) (index $b 0)) (or (eq (index $a 1) (index $b 1)) (hasPrefix (printf "%s/" (trimSuffix "/" (index $a 1))) (index $b 1))) -}}
{{- $errors = append $errors (printf "%s (%s) and %s (%s) overlap: each is a volume of its own, mount them side by side" (index $a 0) (index $a 1) (index $b 0) (index $b 1)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if .Values.edge.enabled -}}
{{- $e := .Values.edge -}}
{{- if not (or (hasPrefix "127." (toString $e.admin.address)) (eq (toString $e.admin.address) "::1")) -}}
{{- $errors = append $errors (printf "edge.admin.address is %q: the Envoy admin interface must stay on a loopback address" $e.admin.address) -}}
{{- end -}}
{{- $edgePorts := dict -}}
{{- range (list (list "listener.port" $e.listener.port) (list "health.port" $e.health.port) (list "metrics.port" $e.metrics.port) (list "admin.port" $e.admin.port)) -}}
{{- $key := toString (index . 1) -}}
{{- if hasKey $edgePorts $key -}}
{{- $errors = append $errors (printf "edge.%s and edge.%s are both %s: one Envoy cannot listen twice on a port" (get $edgePorts $key) (index . 0) $key) -}}
{{- else -}}
{{- $_ := set $edgePorts $key (index . 0) -}}
{{- end -}}
{{- end -}}
{{- if and $e.pdb.create $e.pdb.minAvailable (not (kindIs "invalid" $e.pdb.maxUnavailable)) (ne (toString $e.pdb.maxUnavailable) "") -}}
{{- $errors = append $errors "edge.pdb: set minAvailable or maxUnavailable, not both" -}}
{{- end -}}
{{- end -}}
{{- if lt (int .Values.chat.autoscaling.maxReplicas) (int .Values.chat.autoscaling.minReplicas) -}}
{{- $errors = append $errors (printf "chat.autoscaling.maxReplicas (%v) is below chat.autoscaling.minReplicas (%v)" .Values.chat.autoscaling.maxReplicas .Values.chat.autoscaling.minReplicas) -}}
{{- end -}}
{{- if .Values.postgresql.enabled -}}
{{- if .Values.externalDatabase.host -}}
{{- $errors = append $errors "postgresql.enabled is true and externalDatabase.host is set: choose one (set postgresql.enabled=false to use the external database)" -}}
{{- end -}}
{{- if eq .Values.postgresql.auth.database .Values.postgresql.chat.database -}}
{{- $errors = append $errors "postgresql.auth.database and postgresql.chat.database must differ: each service has its own database" -}}
{{- end -}}
{{- if eq .Values.postgresql.auth.username .Values.postgresql.chat.username -}}
{{- $errors = append $errors "postgresql.auth.username and postgresql.chat.username must differ: each service has its own credentials" -}}
{{- end -}}
{{- else -}}
{{- range $component := list "auth" "chat" -}}
{{- $ext := index $.Values.externalDatabase $component -}}
{{- if and (not $ext.existingSecret) (not $.Values.externalDatabase.host) -}}
{{- $errors = append $errors (printf "postgresql.enabled is false: set externalDatabase.host (with externalDatabase.%s.password) or externalDatabase.%s.existingSecret" $component $component) -}}
{{- else if and (not $ext.existingSecret) (not $ext.password) -}}
{{- $errors = append $errors (printf "externalDatabase.%s: set password or existingSecret (a Secret holding the whole database URL)" $component) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.networkPolicy.enabled (not .Values.networkPolicy.externalDatabasePeers) -}}
{{- $errors = append $errors "networkPolicy.externalDatabasePeers is empty: with an external database and NetworkPolicies on, say where PostgreSQL is (e.g. [{ipBlock: {cidr: 10.0.0.5/32}}])" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.gateway.enabled (not .Values.gateway.create) (not .Values.gateway.parentRefs) -}}
{{- $errors = append $errors "gateway.create is false and gateway.parentRefs is empty: the GRPCRoutes need a Gateway to attach to" -}}
{{- end -}}
{{- if and .Values.gateway.enabled .Values.gateway.create (not .Values.gateway.gatewayClassName) -}}
{{- $errors = append $errors "gateway.create is true: set gateway.gatewayClassName (e.g. envoy-gateway, istio, cilium)" -}}
{{- end -}}
{{- if and .Values.gateway.enabled .Values.certManager.enabled (not .Values.gateway.caCertificateRefs) -}}
{{- $errors = append $errors "gateway.enabled with certManager.enabled: set gateway.caCertificateRefs to a ConfigMap holding the mesh CA as ca.crt (e.g. one that trust-manager writes); cert-manager cannot write ConfigMaps" -}}
{{- end -}}
{{- if $errors -}}
{{- fail (printf "\n\nVALUES VALIDATION:\n- %s\n" (join "\n- " $errors)) -}}
{{- end -}}
{{- end -}}
