{{/* vim: set filetype=mustache: */}}
{{/*
The edge Envoy's bootstrap (edge.enabled): the ingress's role played by Envoy.

Listeners:
  edge     TLS for clients (the ingress.tls certificate); routes by gRPC service name on ingress.host
           (and on any other name), and everything on ingress.authHost / ingress.chatHost to that
           service alone, so reflection and health reach each service
  health   plaintext; /healthz and /livez while Envoy runs
  metrics  plaintext; /stats/prometheus
Clusters auth and chat: the sidecars' mTLS listeners, with the ingress's mesh certificate as client
certificate, checking each service's SAN. Every address and port comes from edge.* values.
*/}}

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

{{/* An upstream cluster of the edge: one service's sidecars, with the ingress's mesh certificate: (dict "ctx" $ "component" "auth"). */}}
{{- define "meshchat.envoy.edgeCluster" -}}
{{- $up := index .ctx.Values.edge.upstreams .component -}}
{{- $svc := index .ctx.Values .component -}}
{{- include "meshchat.envoy.meshCluster" (dict
  "ctx" .ctx
  "name" .component
  "address" (default (include "meshchat.headlessFqdn" .) $up.address)
  "port" ($up.port | default $svc.service.port)
  "sni" (include "meshchat.serviceHost" .)
  "identity" (include "meshchat.identity" .)) -}}
{{- end -}}

{{/* The edge's TLS listener for clients (the CLI, grpcurl): ingress.authHost and ingress.chatHost reach one service each; ingress.host, and any other name, routes by gRPC service name. */}}
{{- define "meshchat.envoy.edgeListener" -}}
{{- $ctx := . -}}
{{- $api := include "meshchat.grpcApi" . | fromYaml -}}
{{- $hosts := list -}}
{{- $byService := list -}}
{{- range $component := list "auth" "chat" -}}
{{- $own := index $ctx.Values.ingress (printf "%sHost" $component) -}}
{{- $grpc := index $api $component -}}
{{- $routes := include "meshchat.envoy.grpcRoutes" (dict "ctx" $ctx "cluster" $component "api" $grpc "prefixes" (list "/") "retries" true) | fromYamlArray -}}
{{- $hosts = append $hosts (dict "name" $component "domains" (list $own (printf "%s:*" $own)) "routes" $routes) -}}
{{- $prefixes := list -}}
{{- range $grpc.services -}}
{{- $prefixes = append $prefixes (printf "/%s/" .) -}}
{{- end -}}
{{- $byService = concat $byService (include "meshchat.envoy.grpcRoutes" (dict "ctx" $ctx "cluster" $component "api" $grpc "prefixes" $prefixes "retries" true) | fromYamlArray) -}}
{{- end -}}
{{- $hosts = append $hosts (dict "name" "main" "domains" (list "*") "routes" $byService) -}}
{{- $options := dict "use_remote_address" true "forward_client_cert_details" "SANITIZE" -}}
{{- include "meshchat.envoy.listenerAddress" (dict "name" "edge" "listen" .Values.edge.listener) }}
  per_connection_buffer_limit_bytes: {{ .Values.mesh.envoy.limits.perConnectionBufferLimitBytes }}
  filter_chains:
    - transport_socket:
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
        {{- include "meshchat.envoy.grpcConnectionManager" (dict "ctx" $ctx "name" "edge" "options" $options "rejectUnderscores" true "virtualHosts" (toYaml $hosts)) | nindent 8 }}
{{- end -}}

{{/* The edge's bootstrap (envoy.yaml). */}}
{{- define "meshchat.envoy.edgeBootstrap" -}}
{{- $edge := .Values.edge -}}
{{- $name := include "meshchat.componentName" (dict "ctx" . "component" "edge") -}}
# Edge Envoy of {{ $name }}, rendered by the meshchat chart. Do not edit: change the values.
{{ include "meshchat.envoy.node" (dict "ctx" . "name" $name "admin" $edge.admin) }}
static_resources:
  listeners:
    {{- include "meshchat.envoy.edgeListener" . | nindent 4 }}
    {{- include "meshchat.envoy.healthListener" (dict "listen" $edge.health) | nindent 4 }}
    {{- include "meshchat.envoy.metricsListener" (dict "ctx" . "listen" $edge.metrics) | nindent 4 }}
  clusters:
    {{- include "meshchat.envoy.edgeCluster" (dict "ctx" . "component" "auth") | nindent 4 }}
    {{- include "meshchat.envoy.edgeCluster" (dict "ctx" . "component" "chat") | nindent 4 }}
    {{- include "meshchat.envoy.staticCluster" (dict "name" "envoy_admin" "address" $edge.admin.address "port" $edge.admin.port "connectTimeout" .Values.mesh.envoy.timeouts.connect) | nindent 4 }}
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
