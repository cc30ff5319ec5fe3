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

{{/* Routes of one service: (dict "ctx" $ "component" "chat" "prefixes" (list ...)). */}}
{{- define "meshchat.envoy.edgeRoutes" -}}
{{- $envoy := .ctx.Values.mesh.envoy -}}
{{- if eq .component "chat" }}
- match:
    path: /meshchat.chat.v1.ChatService/Connect
  route:
    cluster: chat
    timeout: 0s
    idle_timeout: {{ $envoy.timeouts.streamingIdle }}
{{- end }}
{{- range .prefixes }}
- match:
    prefix: {{ . | quote }}
  route:
    cluster: {{ $.component }}
    timeout: {{ $envoy.timeouts.request }}
{{- end }}
{{- end -}}

{{/* An upstream cluster of the edge: (dict "ctx" $ "component" "auth"). */}}
{{- define "meshchat.envoy.edgeCluster" -}}
{{- $ctx := .ctx -}}
{{- $envoy := $ctx.Values.mesh.envoy -}}
{{- $up := index $ctx.Values.edge.upstreams .component -}}
{{- $svc := index $ctx.Values .component -}}
{{- $base := dict "ctx" $ctx "component" .component -}}
- name: {{ .component }}
  type: STRICT_DNS
  dns_lookup_family: V4_PREFERRED
  dns_refresh_rate: 5s
  lb_policy: LEAST_REQUEST
  connect_timeout: {{ $envoy.timeouts.connect }}
  per_connection_buffer_limit_bytes: {{ $envoy.limits.perConnectionBufferLimitBytes }}
  {{- include "meshchat.envoy.upstreamHttp2" $ctx | nindent 2 }}
  {{- include "meshchat.envoy.circuitBreakers" $ctx | nindent 2 }}
  transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
      sni: {{ include "meshchat.serviceHost" $base | quote }}
      common_tls_context:
        {{- include "meshchat.envoy.commonTlsContext" (dict "ctx" $ctx "sans" (list (include "meshchat.identity" $base))) | nindent 8 }}
  load_assignment:
    cluster_name: {{ .component }}
    endpoints:
      - lb_endpoints:
          - endpoint:
              address:
                socket_address:
                  address: {{ default (include "meshchat.headlessHost" $base) $up.address | quote }}
                  port_value: {{ $up.port | default $svc.service.port }}
{{- end -}}

{{- define "meshchat.envoy.edgeBootstrap" -}}
{{- $ctx := . -}}
{{- $edge := .Values.edge -}}
{{- $envoy := .Values.mesh.envoy -}}
{{- $name := include "meshchat.componentName" (dict "ctx" $ctx "component" "edge") -}}
{{- $authPrefixes := list "/meshchat.auth.v1.UserService/" "/meshchat.auth.v1.AuthService/" "/meshchat.auth.v1.AccessService/" -}}
# Edge Envoy of {{ $name }}, rendered by the meshchat chart. Do not edit: change the values.
node:
  id: {{ $name }}
  cluster: {{ $name }}
admin:
  address:
    socket_address:
      address: {{ $edge.admin.address | quote }}
      port_value: {{ $edge.admin.port }}
overload_manager:
  resource_monitors:
    - name: envoy.resource_monitors.global_downstream_max_connections
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
        max_active_downstream_connections: {{ $envoy.limits.maxDownstreamConnections }}
static_resources:
  listeners:
    # TLS for clients (the CLI, grpcurl); routing by gRPC service name.
    - name: edge
      address:
        socket_address:
          address: {{ $edge.listener.address | quote }}
          port_value: {{ $edge.listener.port }}
      per_connection_buffer_limit_bytes: {{ $envoy.limits.perConnectionBufferLimitBytes }}
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
                      {{- include "meshchat.envoy.sdsSource" (dict "ctx" $ctx "file" "sds-server-certificate.yaml") | nindent 22 }}
          filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: edge
                codec_type: HTTP2
                use_remote_address: true
                forward_client_cert_details: SANITIZE
                max_request_headers_kb: {{ $envoy.limits.maxRequestHeadersKb }}
                stream_idle_timeout: {{ $envoy.timeouts.streamIdle }}
                common_http_protocol_options:
                  idle_timeout: {{ $envoy.timeouts.connectionIdle }}
                  max_headers_count: {{ $envoy.limits.maxHeadersCount }}
                  headers_with_underscores_action: REJECT_REQUEST
                http2_protocol_options:
                  {{- include "meshchat.envoy.http2Options" $ctx | nindent 18 }}
                {{- include "meshchat.envoy.accessLog" $ctx | nindent 16 }}
                route_config:
                  name: edge
                  virtual_hosts:
                    - name: auth
                      domains:
                        - {{ .Values.ingress.authHost | quote }}
                        - {{ printf "%s:*" .Values.ingress.authHost | quote }}
                      routes:
                        {{- include "meshchat.envoy.edgeRoutes" (dict "ctx" $ctx "component" "auth" "prefixes" (list "/")) | nindent 24 }}
                    - name: chat
                      domains:
                        - {{ .Values.ingress.chatHost | quote }}
                        - {{ printf "%s:*" .Values.ingress.chatHost | quote }}
                      routes:
                        {{- include "meshchat.envoy.edgeRoutes" (dict "ctx" $ctx "component" "chat" "prefixes" (list "/")) | nindent 24 }}
                    # ingress.host, and any other name: by gRPC service.
                    - name: main
                      domains: ["*"]
                      routes:
                        {{- include "meshchat.envoy.edgeRoutes" (dict "ctx" $ctx "component" "auth" "prefixes" $authPrefixes) | nindent 24 }}
                        {{- include "meshchat.envoy.edgeRoutes" (dict "ctx" $ctx "component" "chat" "prefixes" (list "/meshchat.chat.v1.ChatService/")) | nindent 24 }}
                http_filters:
                  {{- include "meshchat.envoy.router" $ctx | nindent 18 }}
    # Plaintext, for the kubelet's probes only.
    - name: health
      address:
        socket_address:
          address: {{ $edge.health.address | quote }}
          port_value: {{ $edge.health.port }}
      per_connection_buffer_limit_bytes: 8192
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: health
                codec_type: AUTO
                max_request_headers_kb: 8
                stream_idle_timeout: 10s
                route_config:
                  name: health
                  virtual_hosts:
                    - name: health
                      domains: ["*"]
                      routes:
                        - match:
                            path: /livez
                          direct_response:
                            status: 200
                            body:
                              inline_string: "live\n"
                        - match:
                            path: /healthz
                          direct_response:
                            status: 200
                            body:
                              inline_string: "ok\n"
                        - match:
                            prefix: /
                          direct_response:
                            status: 404
                http_filters:
                  {{- include "meshchat.envoy.router" $ctx | nindent 18 }}
    # Plaintext Prometheus metrics: Envoy's /stats/prometheus; nothing else of the admin.
    - name: metrics
      address:
        socket_address:
          address: {{ $edge.metrics.address | quote }}
          port_value: {{ $edge.metrics.port }}
      per_connection_buffer_limit_bytes: {{ $envoy.limits.perConnectionBufferLimitBytes }}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: metrics
                codec_type: AUTO
                max_request_headers_kb: 16
                stream_idle_timeout: 30s
                route_config:
                  name: metrics
                  virtual_hosts:
                    - name: metrics
                      domains: ["*"]
                      routes:
                        - match:
                            path: /stats/prometheus
                            headers:
                              - name: ":method"
                                string_match:
                                  exact: GET
                          route:
                            cluster: envoy_admin
                            timeout: 10s
                        - match:
                            prefix: /
                          direct_response:
                            status: 404
                http_filters:
                  {{- include "meshchat.envoy.router" $ctx | nindent 18 }}
  clusters:
    {{- include "meshchat.envoy.edgeCluster" (dict "ctx" $ctx "component" "auth") | nindent 4 }}
    {{- include "meshchat.envoy.edgeCluster" (dict "ctx" $ctx "component" "chat") | nindent 4 }}
    {{- include "meshchat.envoy.staticCluster" (dict "name" "envoy_admin" "address" $edge.admin.address "port" $edge.admin.port "connectTimeout" $envoy.timeouts.connect) | nindent 4 }}
{{- end -}}
