{{/* vim: set filetype=mustache: */}}
{{/*
The edge Envoy's bootstrap (edge.enabled): the ingress's role played by Envoy.

Listeners:
  edge     TLS for clients (the ingress.tls certificate); routes by gRPC service name on ingress.host
           (and on any other name), and everything on ingress.authHost / ingress.chatHost to that
           service alone, so reflection and health reach each service
  health   plaintext; /healthz and /livez while Envoy runs
  metrics  plaintext; /stats/prometheus
Clusters, per service: <service> (unary calls), <service>_streaming (streaming calls, when it has
any) and <service>_public (health and reflection, which need no token): the same sidecars' mTLS
listeners, with the ingress's mesh certificate as client certificate, checking each service's SAN,
each cluster with its own circuit breaker (mesh.envoy.circuitBreakers), so that no kind of call
can take the others' share. Every address and port comes from edge.* values.

The client's address: the edge uses the address it accepted the connection from
(use_remote_address, no trusted hops) and sets x-forwarded-for to exactly that address, replacing
whatever the client sent; the sidecars pass the header on to the apps. Per client address, token
buckets limit the calls of each class (edge.perClient); connections must finish the TLS handshake
in time, and live at most edge.maxConnectionDuration.
*/}}

{{/* The classes of calls of a service at the edge, each with its own cluster: (dict "api" (an entry of meshchat.grpcApi)). */}}
{{- define "meshchat.envoy.edgeClasses" -}}
- unary
{{- if .api.streaming }}
- streaming
{{- end }}
- public
{{- end -}}

{{/*
The per-client-address rate limits (a local rate limit filter): one token bucket per client
address and class of call, the class read from the route's metadata; a call past its bucket is
answered RESOURCE_EXHAUSTED. Envoy keeps at most edge.perClient.maxTrackedAddresses buckets per
class (the least recently used go first).
*/}}
{{- define "meshchat.envoy.edgeRateLimitFilter" -}}
{{- $perClient := .Values.edge.perClient -}}
- name: envoy.filters.http.local_ratelimit
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
    stat_prefix: per_client
    filter_enabled:
      default_value:
        numerator: 100
        denominator: HUNDRED
    filter_enforced:
      default_value:
        numerator: 100
        denominator: HUNDRED
    rate_limited_as_resource_exhausted: true
    always_consume_default_token_bucket: false
    max_dynamic_descriptors: {{ $perClient.maxTrackedAddresses }}
    descriptors:
      {{- range $class := list "unary" "streaming" "public" }}
      {{- $limit := index $perClient $class }}
      - entries:
          - key: class
            value: {{ $class }}
          - key: remote_address
        token_bucket:
          max_tokens: {{ $limit.burst }}
          tokens_per_fill: {{ $limit.perSecond }}
          fill_interval: 1s
      {{- end }}
    rate_limits:
      - actions:
          - metadata:
              descriptor_key: class
              metadata_key:
                key: meshchat
                path:
                  - key: class
              source: ROUTE_ENTRY
          - remote_address: {}
{{- end -}}

{{/* The SDS file with the certificate clients see. */}}
{{- define "meshchat.envoy.sdsServerCertificate" -}}
resources:
  - "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
    name: edge_certificate
    tls_certificate:
      certificate_chain:
        filename: {{ printf "%s/tls.crt" .Values.edge.tlsDir }}
      private_key:
        filename: {{ printf "%s/tls.key" .Values.edge.tlsDir }}
      watched_directory:
        path: {{ .Values.edge.tlsDir }}
{{- end -}}

{{/* The upstream clusters of the edge for one service's sidecars, one per class of calls, with the ingress's mesh certificate: (dict "ctx" $ "component" "auth"). */}}
{{- define "meshchat.envoy.edgeClusters" -}}
{{- $up := index .ctx.Values.edge.upstreams .component -}}
{{- $svc := index .ctx.Values .component -}}
{{- $api := index (include "meshchat.grpcApi" .ctx | fromYaml) .component -}}
{{- range $class := include "meshchat.envoy.edgeClasses" (dict "api" $api) | fromYamlArray }}
{{ include "meshchat.envoy.meshCluster" (dict
  "ctx" $.ctx
  "name" (ternary $.component (printf "%s_%s" $.component $class) (eq $class "unary"))
  "class" $class
  "address" (default (include "meshchat.headlessFqdn" $) $up.address)
  "port" ($up.port | default $svc.service.port)
  "sni" (include "meshchat.serviceHost" $)
  "identity" (include "meshchat.identity" $)) }}
{{- end }}
{{- end -}}

{{/* The edge's TLS listener for clients (the CLI, grpcurl): ingress.authHost and ingress.chatHost reach one service each; ingress.host, and any other name, routes by gRPC service name. */}}
{{- define "meshchat.envoy.edgeListener" -}}
{{- $ctx := . -}}
{{- $api := include "meshchat.grpcApi" . | fromYaml -}}
{{- $hosts := list -}}
{{- $byService := list -}}
{{- $forwardedFor := list (dict "header" (dict "key" "x-forwarded-for" "value" "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%") "append_action" "OVERWRITE_IF_EXISTS_OR_ADD") -}}
{{- range $component := list "auth" "chat" -}}
{{- $own := index $ctx.Values.ingress (printf "%sHost" $component) -}}
{{- $grpc := index $api $component -}}
{{- $routes := include "meshchat.envoy.grpcRoutes" (dict "ctx" $ctx "cluster" $component "api" $grpc "prefixes" (list "/") "retries" true "split" true "public" true "reflection" $ctx.Values.edge.reflection.enabled "rateLimited" true) | fromYamlArray -}}
{{- $hosts = append $hosts (dict "name" $component "domains" (list $own (printf "%s:*" $own)) "routes" $routes "request_headers_to_add" $forwardedFor) -}}
{{- $prefixes := list -}}
{{- range $grpc.services -}}
{{- $prefixes = append $prefixes (printf "/%s/" .) -}}
{{- end -}}
{{- $byService = concat $byService (include "meshchat.envoy.grpcRoutes" (dict "ctx" $ctx "cluster" $component "api" $grpc "prefixes" $prefixes "retries" true "split" true "rateLimited" true) | fromYamlArray) -}}
{{- end -}}
{{- $hosts = append $hosts (dict "name" "main" "domains" (list "*") "routes" $byService "request_headers_to_add" $forwardedFor) -}}
{{- $options := dict "use_remote_address" true "xff_num_trusted_hops" 0 "forward_client_cert_details" "SANITIZE" -}}
{{- include "meshchat.envoy.listenerAddress" (dict "name" "edge" "listen" .Values.edge.listener) }}
  per_connection_buffer_limit_bytes: {{ .Values.mesh.envoy.limits.perConnectionBufferLimitBytes }}
  filter_chains:
    - transport_socket_connect_timeout: {{ .Values.mesh.envoy.timeouts.handshake }}
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols:
              - h2
            tls_params:
              tls_minimum_protocol_version: TLSv1_2
            tls_certificate_sds_secret_configs:
              - name: edge_certificate
                sds_config:
                  {{- include "meshchat.envoy.sdsSource" (dict "ctx" $ctx "file" "sds-server-certificate.yaml") | nindent 18 }}
      filters:
        {{- include "meshchat.envoy.grpcConnectionManager" (dict "ctx" $ctx "name" "edge" "options" $options "rejectUnderscores" true "maxConnectionDuration" .Values.edge.maxConnectionDuration "virtualHosts" (toYaml $hosts) "filters" (include "meshchat.envoy.edgeRateLimitFilter" $ctx) "service" (include "meshchat.componentName" (dict "ctx" $ctx "component" "edge"))) | nindent 8 }}
{{- end -}}

{{/* The edge's bootstrap (envoy.yaml). */}}
{{- define "meshchat.envoy.edgeBootstrap" -}}
{{- $edge := .Values.edge -}}
{{- $name := include "meshchat.componentName" (dict "ctx" . "component" "edge") -}}
# Edge Envoy of {{ $name }}, rendered by the meshchat chart. Do not edit: change the values.
{{ include "meshchat.envoy.node" (dict "ctx" . "name" $name "admin" $edge.admin "memory" $edge.resources.limits.memory "listeners" (list "edge")) }}
static_resources:
  listeners:
    {{- include "meshchat.envoy.edgeListener" . | nindent 4 }}
    {{- include "meshchat.envoy.healthListener" (dict "ctx" . "listen" $edge.health) | nindent 4 }}
    {{- include "meshchat.envoy.metricsListener" (dict "ctx" . "listen" $edge.metrics) | nindent 4 }}
  clusters:
    {{- include "meshchat.envoy.edgeClusters" (dict "ctx" . "component" "auth") | nindent 4 }}
    {{- include "meshchat.envoy.edgeClusters" (dict "ctx" . "component" "chat") | nindent 4 }}
    {{- include "meshchat.envoy.staticCluster" (dict "name" "envoy_admin" "address" $edge.admin.address "port" $edge.admin.port "connectTimeout" .Values.mesh.envoy.timeouts.connect) | nindent 4 }}
    {{- with include "meshchat.envoy.collectorCluster" . }}
    {{- . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* The edge's ConfigMap: the bootstrap and the SDS files. */}}
{{- define "meshchat.envoy.edgeConfigMap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  {{- include "meshchat.metadata" (dict "ctx" . "component" "edge" "name" (printf "%s-envoy" (include "meshchat.componentName" (dict "ctx" . "component" "edge")))) | nindent 2 }}
data:
  envoy.yaml: |
    {{- include "meshchat.envoy.edgeBootstrap" . | nindent 4 }}
  sds-certificate.yaml: |
    {{- include "meshchat.envoy.sdsCertificate" . | nindent 4 }}
  sds-ca.yaml: |
    {{- include "meshchat.envoy.sdsCa" . | nindent 4 }}
  sds-server-certificate.yaml: |
    {{- include "meshchat.envoy.sdsServerCertificate" . | nindent 4 }}
{{- end -}}
