{{/* vim: set filetype=mustache: */}}
{{/*
Checks of values that the schema cannot express, in bitnami's manner: one define per topic, each
printing one message per line for what is wrong (nothing when all is well) and naming the values
to change. "meshchat.validateValues" joins them and fails once with every message; it is included
from templates/validate-values.yaml only (see there why).
*/}}

{{/* Whether an address is a loopback address: (dict "address" "127.0.0.1" "localhost" true). */}}
{{- define "meshchat.isLoopback" -}}
{{- $addr := toString .address -}}
{{- if or (hasPrefix "127." $addr) (eq $addr "::1") (and .localhost (eq $addr "localhost")) -}}true{{- end -}}
{{- end -}}

{{/* The app listens on loopback only (its sidecar is the pod's way in); Envoy's admin interfaces stay on loopback. */}}
{{- define "meshchat.validateValues.loopback" -}}
{{- range $component := list "auth" "chat" -}}
{{- $v := index $.Values $component -}}
{{- range $what := list "listen" "metricsListen" -}}
{{- $addr := (index $v $what).address -}}
{{- if not (include "meshchat.isLoopback" (dict "address" $addr "localhost" true)) }}
{{ printf "%s.%s.address is %q: the app must listen on a loopback address only (127.0.0.1); its sidecar is the pod's way in" $component $what (toString $addr) }}
{{- end -}}
{{- end -}}
{{- if not (include "meshchat.isLoopback" $v.sidecar.admin) }}
{{ printf "%s.sidecar.admin.address is %q: the Envoy admin interface must stay on a loopback address" $component (toString $v.sidecar.admin.address) }}
{{- end -}}
{{- end -}}
{{- if and .Values.edge.enabled (not (include "meshchat.isLoopback" .Values.edge.admin)) }}
{{ printf "edge.admin.address is %q: the Envoy admin interface must stay on a loopback address" (toString .Values.edge.admin.address) }}
{{- end -}}
{{- end -}}

{{/* Messages for ports used twice among named ports: (dict "what" "..." "prefix" "auth." "ports" (list (list "listen.port" 50051) ...)). */}}
{{- define "meshchat.validateValues.distinctPorts" -}}
{{- $seen := dict -}}
{{- range .ports -}}
{{- $key := toString (index . 1) -}}
{{- if hasKey $seen $key }}
{{ printf "%s%s and %s%s are both %s: %s" $.prefix (get $seen $key) $.prefix (index . 0) $key $.what }}
{{- else -}}
{{- $_ := set $seen $key (index . 0) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The containers of one pod share its ports: every listener of a pod has a port of its own. */}}
{{- define "meshchat.validateValues.ports" -}}
{{- range $component := list "auth" "chat" -}}
{{- $v := index $.Values $component -}}
{{- $ports := list (list "listen.port" $v.listen.port) (list "metricsListen.port" $v.metricsListen.port) -}}
{{- range $listener := include "meshchat.sidecarListeners" $v | fromYamlArray -}}
{{- $ports = append $ports (list (printf "sidecar.%s.port" $listener) (index $v.sidecar $listener).port) -}}
{{- end -}}
{{- include "meshchat.validateValues.distinctPorts" (dict "what" "the containers of one pod share its ports" "prefix" (printf "%s." $component) "ports" $ports) -}}
{{- end -}}
{{- if .Values.edge.enabled -}}
{{- $e := .Values.edge -}}
{{- $ports := list (list "listener.port" $e.listener.port) (list "health.port" $e.health.port) (list "metrics.port" $e.metrics.port) (list "admin.port" $e.admin.port) -}}
{{- include "meshchat.validateValues.distinctPorts" (dict "what" "one Envoy cannot listen twice on a port" "prefix" "edge." "ports" $ports) -}}
{{- end -}}
{{- end -}}

{{/* A PodDisruptionBudget takes minAvailable or maxUnavailable, not both. */}}
{{- define "meshchat.validateValues.pdb" -}}
{{- range $component := list "auth" "chat" "edge" -}}
{{- $pdb := (index $.Values $component).pdb -}}
{{- if and (or (ne $component "edge") $.Values.edge.enabled) $pdb.create $pdb.minAvailable (not (kindIs "invalid" $pdb.maxUnavailable)) (ne (toString $pdb.maxUnavailable) "") }}
{{ printf "%s.pdb: set minAvailable or maxUnavailable, not both" $component }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Kubernetes waits terminationGracePeriodSeconds for the whole stop: the preStop pause, then the service's own grace period. */}}
{{- define "meshchat.validateValues.gracePeriod" -}}
{{- range $component := list "auth" "chat" -}}
{{- $v := index $.Values $component -}}
{{- if le (int $v.terminationGracePeriodSeconds) (add $v.preStopSleepSeconds $v.gracePeriodSeconds) }}
{{ list
  (printf "%s.terminationGracePeriodSeconds (%v) must exceed" $component $v.terminationGracePeriodSeconds)
  (printf "%s.preStopSleepSeconds plus %s.gracePeriodSeconds (%v + %v)," $component $component $v.preStopSleepSeconds $v.gracePeriodSeconds)
  "or Kubernetes kills the service before it has stopped" | join " " }}
{{- end -}}
{{- end -}}
{{- $e := .Values.edge -}}
{{- if and $e.enabled (le (int $e.terminationGracePeriodSeconds) (int $e.preStopSleepSeconds)) }}
{{ printf "edge.terminationGracePeriodSeconds (%v) must exceed edge.preStopSleepSeconds (%v)" $e.terminationGracePeriodSeconds $e.preStopSleepSeconds }}
{{- end -}}
{{- end -}}

{{/* Each mount directory is a volume of its own: none may contain another. */}}
{{- define "meshchat.validateValues.mountDirs" -}}
{{- $dirs := list (list "mesh.envoy.configDir" .Values.mesh.envoy.configDir) (list "mesh.envoy.certDir" .Values.mesh.envoy.certDir) (list "edge.tlsDir" .Values.edge.tlsDir) -}}
{{- range $a := $dirs -}}
{{- range $b := $dirs -}}
{{- $inside := hasPrefix (printf "%s/" (trimSuffix "/" (index $a 1))) (index $b 1) -}}
{{- if and (ne (index $a 0) (index $b 0)) (or (eq (index $a 1) (index $b 1)) $inside) }}
{{ printf "%s (%s) and %s (%s) overlap: each is a volume of its own, mount them side by side" (index $a 0) (index $a 1) (index $b 0) (index $b 1) }}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The autoscaler's bounds are in order. */}}
{{- define "meshchat.validateValues.autoscaling" -}}
{{- $a := .Values.chat.autoscaling -}}
{{- if lt (int $a.maxReplicas) (int $a.minReplicas) }}
{{ printf "chat.autoscaling.maxReplicas (%v) is below chat.autoscaling.minReplicas (%v)" $a.maxReplicas $a.minReplicas }}
{{- end -}}
{{- end -}}

{{/* One database choice: the bundled PostgreSQL or the CloudNativePG Cluster with distinct databases and roles, or a complete external one. */}}
{{- define "meshchat.validateValues.database" -}}
{{- $pg := .Values.postgresql -}}
{{- if $pg.enabled -}}
{{- if .Values.externalDatabase.host }}
postgresql.enabled is true and externalDatabase.host is set: choose one (set postgresql.enabled=false to use the external database)
{{- end -}}
{{- if eq $pg.auth.database $pg.chat.database }}
postgresql.auth.database and postgresql.chat.database must differ: each service has its own database
{{- end -}}
{{- if eq $pg.auth.username $pg.chat.username }}
postgresql.auth.username and postgresql.chat.username must differ: each service has its own credentials
{{- end -}}
{{- if .Values.cloudnativePg.enabled }}
postgresql.enabled and cloudnativePg.enabled are both true: choose one (set postgresql.enabled=false to use the CloudNativePG Cluster)
{{- end -}}
{{- else if .Values.cloudnativePg.enabled -}}
{{- $cnpg := .Values.cloudnativePg -}}
{{- if .Values.externalDatabase.host }}
cloudnativePg.enabled is true and externalDatabase.host is set: choose one
{{- end -}}
{{- if eq $cnpg.auth.database $cnpg.chat.database }}
cloudnativePg.auth.database and cloudnativePg.chat.database must differ: each service has its own database
{{- end -}}
{{- if eq $cnpg.auth.username $cnpg.chat.username }}
cloudnativePg.auth.username and cloudnativePg.chat.username must differ: each service has its own credentials
{{- end -}}
{{- else -}}
{{- range $component := list "auth" "chat" -}}
{{- $ext := index $.Values.externalDatabase $component -}}
{{- if and (not $ext.existingSecret) (not $.Values.externalDatabase.host) }}
{{ printf "postgresql.enabled is false: set externalDatabase.host (with externalDatabase.%s.password) or externalDatabase.%s.existingSecret" $component $component }}
{{- else if and (not $ext.existingSecret) (not $ext.password) }}
{{ printf "externalDatabase.%s: set password or existingSecret (a Secret holding the whole database URL)" $component }}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The NetworkPolicies know every peer they must let through: the external database, the way in. */}}
{{- define "meshchat.validateValues.networkPolicy" -}}
{{- $np := .Values.networkPolicy -}}
{{- if $np.enabled -}}
{{- if and (not .Values.postgresql.enabled) (not .Values.cloudnativePg.enabled) (not $np.externalDatabasePeers) }}
networkPolicy.externalDatabasePeers is empty: with an external database and NetworkPolicies on, say where PostgreSQL is (e.g. [{ipBlock: {cidr: 10.0.0.5/32}}])
{{- end -}}
{{- if and .Values.ingress.enabled (not $np.ingressControllerPeers) }}
networkPolicy.ingressControllerPeers is empty: with ingress.enabled and NetworkPolicies on, say which pods are the ingress controller, or nothing reaches the services
{{- end -}}
{{- if and .Values.gateway.enabled (not $np.gatewayPeers) }}
{{ list
  "networkPolicy.gatewayPeers is empty: with gateway.enabled and NetworkPolicies on, say which pods"
  "are the Gateway's proxies, or every route times out (Envoy Gateway's: [{namespaceSelector:"
  "{matchLabels: {kubernetes.io/metadata.name: envoy-gateway-system}}, podSelector: {matchLabels:"
  "{app.kubernetes.io/name: envoy, app.kubernetes.io/component: proxy}}}])" | join " " }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The GRPCRoutes have a Gateway, and the BackendTLSPolicies a CA they can read. */}}
{{- define "meshchat.validateValues.gateway" -}}
{{- $gw := .Values.gateway -}}
{{- if $gw.enabled -}}
{{- if and (not $gw.create) (not $gw.parentRefs) }}
gateway.create is false and gateway.parentRefs is empty: the GRPCRoutes need a Gateway to attach to
{{- end -}}
{{- if and $gw.create (not $gw.gatewayClassName) }}
gateway.create is true: set gateway.gatewayClassName (e.g. envoy-gateway, istio, cilium)
{{- end -}}
{{- if and .Values.certManager.enabled (not $gw.caCertificateRefs) }}
gateway.enabled with certManager.enabled: set gateway.caCertificateRefs to a ConfigMap holding the mesh CA as ca.crt (e.g. one that trust-manager writes); cert-manager cannot write ConfigMaps
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Every check's messages, joined; the rendering fails once, listing them all. */}}
{{- define "meshchat.validateValues" -}}
{{- $topics := list "loopback" "ports" "pdb" "gracePeriod" "mountDirs" "autoscaling" "database" "networkPolicy" "gateway" -}}
{{- $messages := list -}}
{{- range $topic := $topics -}}
{{- $messages = concat $messages (include (printf "meshchat.validateValues.%s" $topic) $ | splitList "\n" | compact) -}}
{{- end -}}
{{- if $messages -}}
{{- fail (printf "\n\nVALUES VALIDATION:\n- %s\n" (join "\n- " $messages)) -}}
{{- end -}}
{{- end -}}
