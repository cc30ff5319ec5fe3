{{/* vim: set filetype=mustache: */}}
{{/*
The Envoy sidecar's bootstrap and its file-based SDS resources.

Every address and port comes from values (<component>.listen, .metricsListen, .sidecar.*), so the
same rendering runs in a pod, in a network namespace or, with changed ports, side by side on one host.

Listeners:
  inbound   mTLS; a client certificate from the mesh CA whose SAN is an allowed caller; routes to the app
  outbound  (chat only) plaintext on loopback; chat reaches auth through it over mTLS, checking auth's SAN
  health    plaintext; /healthz is 200 only while the app's gRPC health check is SERVING, /livez while Envoy runs
  metrics   plaintext; /metrics is the app's Prometheus endpoint, /stats/prometheus is Envoy's
Certificates come from SDS files whose secrets watch the certificate directory (a whole-directory
Secret mount), so a rotated certificate is used by new connections without a restart.
*/}}

{{/* Names of the SDS secrets. */}}
{{- define "meshchat.envoy.certSecret" -}}mesh_certificate{{- end -}}
{{- define "meshchat.envoy.caSecret" -}}mesh_ca{{- end -}}

{{/* An SDS config source reading one file of the bootstrap directory: (dict "ctx" $ "file" "sds-certificate.yaml"). */}}
{{- define "meshchat.envoy.sdsSource" -}}
path_config_source:
  path: {{ printf "%s/%s" .ctx.Values.mesh.envoy.configDir .file }}
  watched_directory:
    path: {{ .ctx.Values.mesh.envoy.configDir }}
resource_api_version: V3
{{- end -}}

{{/* common_tls_context of the mesh, verifying the peer's SAN against a list: (dict "ctx" $ "sans" (list ...)). */}}
{{- define "meshchat.envoy.commonTlsContext" -}}
alpn_protocols:
  - h2
tls_params:
  tls_minimum_protocol_version: TLSv1_2
tls_certificate_sds_secret_configs:
  - name: {{ include "meshchat.envoy.certSecret" . }}
    sds_config:
      {{- include "meshchat.envoy.sdsSource" (dict "ctx" .ctx "file" "sds-certificate.yaml") | nindent 6 }}
combined_validation_context:
  default_validation_context:
    match_typed_subject_alt_names:
      {{- range .sans }}
      - san_type: DNS
        matcher:
          exact: {{ . | quote }}
      {{- end }}
  validation_context_sds_secret_config:
    name: {{ include "meshchat.envoy.caSecret" . }}
    sds_config:
      {{- include "meshchat.envoy.sdsSource" (dict "ctx" .ctx "file" "sds-ca.yaml") | nindent 6 }}
{{- end -}}

{{/* HTTP/2 options shared by listeners and clusters. */}}
{{- define "meshchat.envoy.http2Options" -}}
max_concurrent_streams: {{ .Values.mesh.envoy.limits.maxConcurrentStreams }}
initial_stream_window_size: {{ .Values.mesh.envoy.limits.initialStreamWindowSize }}
initial_connection_window_size: {{ .Values.mesh.envoy.limits.initialConnectionWindowSize }}
connection_keepalive:
  interval: {{ .Values.mesh.envoy.timeouts.keepaliveInterval }}
  timeout: {{ .Values.mesh.envoy.timeouts.keepaliveTimeout }}
{{- end -}}

{{/* Upstream protocol options: HTTP/2 towards a gRPC server. */}}
{{- define "meshchat.envoy.upstreamHttp2" -}}
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    common_http_protocol_options:
      idle_timeout: {{ .Values.mesh.envoy.timeouts.connectionIdle }}
    explicit_http_config:
      http2_protocol_options:
        {{- include "meshchat.envoy.http2Options" . | nindent 8 }}
{{- end -}}

{{/* Circuit breakers of a cluster. */}}
{{- define "meshchat.envoy.circuitBreakers" -}}
circuit_breakers:
  thresholds:
    - priority: DEFAULT
      max_connections: {{ .Values.mesh.envoy.limits.maxConnections }}
      max_pending_requests: {{ .Values.mesh.envoy.limits.maxPendingRequests }}
      max_requests: {{ .Values.mesh.envoy.limits.maxRequests }}
      max_retries: 3
{{- end -}}

{{/* A stdout access log, when enabled. */}}
{{- define "meshchat.envoy.accessLog" -}}
{{- if .Values.mesh.envoy.accessLog }}
access_log:
  - name: envoy.access_loggers.stdout
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
      log_format:
        json_format:
          time: "%START_TIME%"
          listener: "%ACCESS_LOG_TYPE%"
          method: "%REQ(:METHOD)%"
          path: "%REQ(:PATH)%"
          response_code: "%RESPONSE_CODE%"
          grpc_status: "%GRPC_STATUS(NUMBER)%"
          response_flags: "%RESPONSE_FLAGS%"
          duration_ms: "%DURATION%"
          upstream_host: "%UPSTREAM_HOST%"
          peer_san: "%DOWNSTREAM_PEER_DNS_SAN%"
          request_id: "%REQ(X-REQUEST-ID)%"
{{- end }}
{{- end -}}

{{/* A router filter. */}}
{{- define "meshchat.envoy.router" -}}
- name: envoy.filters.http.router
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
{{- end -}}

{{/* A plain STATIC cluster on a loopback address: (dict "name" "..." "address" "..." "port" N "connectTimeout" "5s"). */}}
{{- define "meshchat.envoy.staticCluster" -}}
- name: {{ .name }}
  type: STATIC
  connect_timeout: {{ .connectTimeout }}
  load_assignment:
    cluster_name: {{ .name }}
    endpoints:
      - lb_endpoints:
          - endpoint:
              address:
                socket_address:
                  address: {{ .address | quote }}
                  port_value: {{ .port }}
{{- end -}}

{{/*
The bootstrap (envoy.yaml) of one component's sidecar: (dict "ctx" $ "component" "auth").
*/}}
{{- define "meshchat.envoy.bootstrap" -}}
{{- $ctx := .ctx -}}
{{- $v := index $ctx.Values .component -}}
{{- $envoy := $ctx.Values.mesh.envoy -}}
{{- $name := include "meshchat.componentName" . -}}
{{- $ingressId := include "meshchat.identity" (dict "ctx" $ctx "component" "ingress") -}}
{{- $callers := list $ingressId -}}
{{- if eq .component "auth" -}}
{{- $callers = append $callers (include "meshchat.identity" (dict "ctx" $ctx "component" "chat")) -}}
{{- end -}}
{{- $callers = concat $callers $v.sidecar.extraAllowedCallers -}}
# Envoy sidecar of {{ $name }}, rendered by the meshchat chart. Do not edit: change the values.
node:
  id: {{ $name }}
  cluster: {{ $name }}
admin:
  address:
    socket_address:
      address: {{ $v.sidecar.admin.address | quote }}
      port_value: {{ $v.sidecar.admin.port }}
overload_manager:
  resource_monitors:
    - name: envoy.resource_monitors.global_downstream_max_connections
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
        max_active_downstream_connections: {{ $envoy.limits.maxDownstreamConnections }}
static_resources:
  listeners:
    # mTLS from the ingress{{ if eq .component "auth" }} and the chat service{{ end }}: only the allowed callers' certificates pass.
    - name: inbound
      address:
        socket_address:
          address: {{ $v.sidecar.inbound.address | quote }}
          port_value: {{ $v.sidecar.inbound.port }}
      per_connection_buffer_limit_bytes: {{ $envoy.limits.perConnectionBufferLimitBytes }}
      filter_chains:
        - transport_socket:
            name: envoy.transport_sockets.tls
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
              require_client_certificate: true
              common_tls_context:
                {{- include "meshchat.envoy.commonTlsContext" (dict "ctx" $ctx "sans" $callers) | nindent 16 }}
          filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: inbound
                codec_type: HTTP2
                server_header_transformation: PASS_THROUGH
                forward_client_cert_details: SANITIZE_SET
                set_current_client_cert_details:
                  dns: true
                  uri: true
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
                  name: inbound
                  virtual_hosts:
                    - name: {{ .component }}
                      domains: ["*"]
                      routes:
                        {{- if eq .component "chat" }}
                        # The long-lived Connect stream: no route timeout, only an idle timeout that heartbeats reset.
                        - match:
                            path: /meshchat.chat.v1.ChatService/Connect
                          route:
                            cluster: local_app
                            timeout: 0s
                            idle_timeout: {{ $envoy.timeouts.streamingIdle }}
                        {{- end }}
                        - match:
                            prefix: /
                          route:
                            cluster: local_app
                            timeout: {{ $envoy.timeouts.request }}
                http_filters:
                  {{- include "meshchat.envoy.router" $ctx | nindent 18 }}
    {{- if eq .component "chat" }}
    # Plaintext on loopback: the chat service's way to auth (MESHCHAT_AUTH_ADDR), over mTLS from here on.
    - name: outbound_auth
      address:
        socket_address:
          address: {{ $v.sidecar.outbound.address | quote }}
          port_value: {{ $v.sidecar.outbound.port }}
      per_connection_buffer_limit_bytes: {{ $envoy.limits.perConnectionBufferLimitBytes }}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: outbound_auth
                codec_type: HTTP2
                max_request_headers_kb: {{ $envoy.limits.maxRequestHeadersKb }}
                stream_idle_timeout: {{ $envoy.timeouts.streamIdle }}
                common_http_protocol_options:
                  idle_timeout: {{ $envoy.timeouts.connectionIdle }}
                  max_headers_count: {{ $envoy.limits.maxHeadersCount }}
                http2_protocol_options:
                  {{- include "meshchat.envoy.http2Options" $ctx | nindent 18 }}
                {{- include "meshchat.envoy.accessLog" $ctx | nindent 16 }}
                route_config:
                  name: outbound_auth
                  virtual_hosts:
                    - name: auth
                      domains: ["*"]
                      routes:
                        - match:
                            prefix: /
                          route:
                            cluster: auth
                            timeout: {{ $envoy.timeouts.request }}
                http_filters:
                  {{- include "meshchat.envoy.router" $ctx | nindent 18 }}
    {{- end }}
    # Plaintext, for the kubelet's probes only.
    - name: health
      address:
        socket_address:
          address: {{ $v.sidecar.health.address | quote }}
          port_value: {{ $v.sidecar.health.port }}
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
                            prefix: /
                          direct_response:
                            status: 404
                http_filters:
                  # /healthz: 200 only while the app's gRPC health check (service "") says SERVING.
                  - name: envoy.filters.http.health_check
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck
                      pass_through_mode: false
                      headers:
                        - name: ":path"
                          string_match:
                            exact: /healthz
                      cluster_min_healthy_percentages:
                        local_app:
                          value: 100
                  {{- include "meshchat.envoy.router" $ctx | nindent 18 }}
    # Plaintext Prometheus metrics: the app's /metrics and Envoy's /stats/prometheus; nothing else of the admin.
    - name: metrics
      address:
        socket_address:
          address: {{ $v.sidecar.metrics.address | quote }}
          port_value: {{ $v.sidecar.metrics.port }}
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
                            path: /metrics
                            headers:
                              - name: ":method"
                                string_match:
                                  exact: GET
                          route:
                            cluster: local_metrics
                            timeout: 10s
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
    # The app's gRPC server on loopback, health-checked with grpc.health.v1.Health.
    - name: local_app
      type: STATIC
      connect_timeout: {{ $envoy.timeouts.connect }}
      per_connection_buffer_limit_bytes: {{ $envoy.limits.perConnectionBufferLimitBytes }}
      {{- include "meshchat.envoy.upstreamHttp2" $ctx | nindent 6 }}
      {{- include "meshchat.envoy.circuitBreakers" $ctx | nindent 6 }}
      health_checks:
        - timeout: {{ $envoy.healthCheck.timeout }}
          interval: {{ $envoy.healthCheck.interval }}
          # The health listener (the kubelet's probe) follows this check whether or not traffic
          # has flowed: without these, Envoy checks a cluster that has had no traffic only every
          # 60 s, so /healthz would lag the app by up to a minute after start and on the first change.
          no_traffic_interval: {{ $envoy.healthCheck.interval }}
          no_traffic_healthy_interval: {{ $envoy.healthCheck.interval }}
          unhealthy_threshold: {{ $envoy.healthCheck.unhealthyThreshold }}
          healthy_threshold: {{ $envoy.healthCheck.healthyThreshold }}
          grpc_health_check:
            service_name: ""
      load_assignment:
        cluster_name: local_app
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address:
                      address: {{ $v.listen.address | quote }}
                      port_value: {{ $v.listen.port }}
    {{- include "meshchat.envoy.staticCluster" (dict "name" "local_metrics" "address" $v.metricsListen.address "port" $v.metricsListen.port "connectTimeout" $envoy.timeouts.connect) | nindent 4 }}
    {{- include "meshchat.envoy.staticCluster" (dict "name" "envoy_admin" "address" $v.sidecar.admin.address "port" $v.sidecar.admin.port "connectTimeout" $envoy.timeouts.connect) | nindent 4 }}
    {{- if eq .component "chat" }}
    {{- $authCtx := dict "ctx" $ctx "component" "auth" }}
    {{- $authHost := default (include "meshchat.headlessHost" $authCtx) $v.sidecar.authUpstream.address }}
    {{- $authPort := $v.sidecar.authUpstream.port | default $ctx.Values.auth.service.port }}
    # The auth service's sidecars over mTLS; only a certificate with auth's identity is accepted.
    - name: auth
      type: STRICT_DNS
      dns_lookup_family: V4_PREFERRED
      dns_refresh_rate: 5s
      lb_policy: LEAST_REQUEST
      connect_timeout: {{ $envoy.timeouts.connect }}
      per_connection_buffer_limit_bytes: {{ $envoy.limits.perConnectionBufferLimitBytes }}
      {{- include "meshchat.envoy.upstreamHttp2" $ctx | nindent 6 }}
      {{- include "meshchat.envoy.circuitBreakers" $ctx | nindent 6 }}
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
          sni: {{ include "meshchat.serviceHost" $authCtx | quote }}
          common_tls_context:
            {{- include "meshchat.envoy.commonTlsContext" (dict "ctx" $ctx "sans" (list (include "meshchat.identity" $authCtx))) | nindent 12 }}
      load_assignment:
        cluster_name: auth
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address:
                      address: {{ $authHost | quote }}
                      port_value: {{ $authPort }}
    {{- end }}
{{- end -}}

{{/* The SDS file with the workload certificate; the secret reloads when the certificate directory changes. */}}
{{- define "meshchat.envoy.sdsCertificate" -}}
resources:
  - "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
    name: {{ include "meshchat.envoy.certSecret" . }}
    tls_certificate:
      certificate_chain:
        filename: {{ printf "%s/tls.crt" .Values.mesh.envoy.certDir }}
      private_key:
        filename: {{ printf "%s/tls.key" .Values.mesh.envoy.certDir }}
      watched_directory:
        path: {{ .Values.mesh.envoy.certDir }}
{{- end -}}

{{/* The SDS file with the mesh CA that verifies peers. */}}
{{- define "meshchat.envoy.sdsCa" -}}
resources:
  - "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
    name: {{ include "meshchat.envoy.caSecret" . }}
    validation_context:
      trusted_ca:
        filename: {{ printf "%s/ca.crt" .Values.mesh.envoy.certDir }}
      watched_directory:
        path: {{ .Values.mesh.envoy.certDir }}
{{- end -}}
