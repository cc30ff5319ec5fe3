{{/* vim: set filetype=mustache: */}}
{{/*
The Envoy sidecar's bootstrap and its file-based SDS resources.

Every address and port comes from values (<component>.listen, .metricsListen, .sidecar.*), so the
same rendering runs in a pod, in a network namespace or, with changed ports, side by side on one host.

Listeners:
  inbound   mTLS; a client certificate from the mesh CA whose SAN is an allowed caller; routes to the app
  outbound  one per upstream of the component (chat: auth), plaintext on loopback; the app reaches the
            upstream through it over mTLS, checking the upstream's SAN
  health    plaintext; /healthz is 200 only while the app's gRPC health check is SERVING (readiness),
            /livez/app while the app answers that check at all (the app's liveness), /livez while Envoy runs
  metrics   plaintext; /metrics is the app's Prometheus endpoint, /stats/prometheus is Envoy's
Clusters towards the app: local_app (unary calls, health-checked), local_app_streaming (streaming
calls) and local_app_public (health and reflection), each with its own circuit breaker, so that
one kind of call filling its limit leaves the others their share.
Abuse: a TLS handshake must finish (timeouts.handshake) and request headers arrive
(timeouts.requestHeaders) in time; the listeners that take calls have a connection limit each
below the process's global one, the health and metrics listeners are outside the global limit
(and have small limits of their own); the overload manager acts on the heap, sized from the
container's memory limit.
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
initial_stream_window_size: {{ int .Values.mesh.envoy.limits.initialStreamWindowSize }}
initial_connection_window_size: {{ int .Values.mesh.envoy.limits.initialConnectionWindowSize }}
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

{{/* Circuit breakers of a cluster for one class of calls (unary, streaming, public): (dict "ctx" $ "class" "unary"). */}}
{{- define "meshchat.envoy.circuitBreakers" -}}
{{- $limits := index .ctx.Values.mesh.envoy.circuitBreakers .class -}}
circuit_breakers:
  thresholds:
    - priority: DEFAULT
      max_connections: {{ $limits.maxConnections }}
      max_pending_requests: {{ $limits.maxPendingRequests }}
      max_requests: {{ $limits.maxRequests }}
      max_retries: 3
{{- end -}}

{{/* A Kubernetes memory quantity as values.schema.json admits it (256Mi, 1.5Gi, 500M, 1000000) in bytes, rounded down. */}}
{{- define "meshchat.envoy.bytes" -}}
{{- if kindIs "string" . -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" . -}}
{{- $units := dict "" 1 "m" 0.001 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "Ei" 1152921504606846976 -}}
{{- mulf $number (index $units (trimPrefix $number .)) | floor | int64 -}}
{{- else -}}
{{- float64 . | floor | int64 -}}
{{- end -}}
{{- end -}}

{{/*
The overload manager: the global connection limit, and the heap (fixed_heap:
mesh.envoy.overload.heapPercent of the container's memory limit) with its actions: shrink the
heap, then stop accepting requests, then connections: (dict "ctx" $ "memory" "256Mi").
*/}}
{{- define "meshchat.envoy.overloadManager" -}}
{{- $envoy := .ctx.Values.mesh.envoy -}}
{{- $o := $envoy.overload -}}
{{- $limit := include "meshchat.envoy.bytes" .memory -}}
overload_manager:
  refresh_interval: 0.25s
  resource_monitors:
    - name: envoy.resource_monitors.global_downstream_max_connections
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
        max_active_downstream_connections: {{ $envoy.limits.maxDownstreamConnections }}
    - name: envoy.resource_monitors.fixed_heap
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig
        max_heap_size_bytes: {{ mulf $limit $o.heapPercent 0.01 | floor | int64 }}
  actions:
    - name: envoy.overload_actions.shrink_heap
      triggers:
        - name: envoy.resource_monitors.fixed_heap
          threshold:
            value: {{ $o.shrinkHeapAt }}
    - name: envoy.overload_actions.stop_accepting_requests
      triggers:
        - name: envoy.resource_monitors.fixed_heap
          threshold:
            value: {{ $o.stopAcceptingRequestsAt }}
    - name: envoy.overload_actions.stop_accepting_connections
      triggers:
        - name: envoy.resource_monitors.fixed_heap
          threshold:
            value: {{ $o.stopAcceptingConnectionsAt }}
{{- end -}}

{{/*
Per-listener connection limits (runtime keys of Envoy's listener connection limit):
(dict "limits" (dict "inbound" 8192 "health" 256)).
*/}}
{{- define "meshchat.envoy.runtime" -}}
layered_runtime:
  layers:
    - name: listener_connection_limits
      static_layer:
        {{- range $listener, $limit := .limits }}
        envoy.resource_limits.listener.{{ $listener }}.connection_limit: {{ $limit }}
        {{- end }}
{{- end -}}

{{/*
Outlier detection of a cluster of other pods: a pod whose connections fail (locally originated:
connect failures, resets, timeouts) or that answers UNAVAILABLE (503: gateway failures) several
times in a row is ejected for a while, so calls go to the others.
*/}}
{{- define "meshchat.envoy.outlierDetection" -}}
{{- $o := .Values.mesh.envoy.outlierDetection -}}
outlier_detection:
  split_external_local_origin_errors: true
  consecutive_local_origin_failure: {{ $o.consecutiveFailures }}
  enforcing_consecutive_local_origin_failure: 100
  consecutive_gateway_failure: {{ $o.consecutiveFailures }}
  enforcing_consecutive_gateway_failure: 100
  interval: {{ $o.interval }}
  base_ejection_time: {{ $o.baseEjectionTime }}
  max_ejection_percent: {{ $o.maxEjectionPercent }}
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
          forwarded_for: "%REQ(X-FORWARDED-FOR)%"
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
The node, the admin interface (loopback, outside the global connection limit), the overload
manager and the listeners' connection limits: (dict "ctx" $ "name" "..." "admin" {address, port}
"memory" (the container's memory limit) "listeners" (list of the listeners that take calls)).
*/}}
{{- define "meshchat.envoy.node" -}}
{{- $limits := .ctx.Values.mesh.envoy.limits -}}
{{- if ge (int $limits.maxListenerConnections) (int $limits.maxDownstreamConnections) -}}
{{- fail (printf "mesh.envoy.limits.maxListenerConnections (%v) must be below mesh.envoy.limits.maxDownstreamConnections (%v), so that a flood of one listener leaves the others room" $limits.maxListenerConnections $limits.maxDownstreamConnections) -}}
{{- end -}}
{{- $plain := .ctx.Values.mesh.envoy.plaintext -}}
{{- $connections := dict "health" $plain.maxConnections "metrics" $plain.maxConnections -}}
{{- range .listeners -}}
{{- $_ := set $connections . $limits.maxListenerConnections -}}
{{- end -}}
node:
  id: {{ .name }}
  cluster: {{ .name }}
admin:
  address:
    socket_address:
      address: {{ .admin.address | quote }}
      port_value: {{ .admin.port }}
  ignore_global_conn_limit: true
{{ include "meshchat.envoy.overloadManager" . }}
{{ include "meshchat.envoy.runtime" (dict "limits" $connections) }}
{{- end -}}

{{/* A listener's name and socket address: (dict "name" "..." "listen" {address, port}). */}}
{{- define "meshchat.envoy.listenerAddress" -}}
- name: {{ .name }}
  address:
    socket_address:
      address: {{ .listen.address | quote }}
      port_value: {{ .listen.port }}
{{- end -}}

{{/*
With tracing.collector.address: a connection manager's tracing, OpenTelemetry's tracer exporting
to the otel_collector cluster and propagating W3C trace context (traceparent). A request is
sampled by the first Envoy it reaches (tracing.samplingRatio); the Envoys after it follow that
decision (carried by x-request-id), the apps the traceparent's sampled flag:
(dict "ctx" $ "service" "meshchat-edge").
*/}}
{{- define "meshchat.envoy.tracing" -}}
{{- $tracing := .ctx.Values.tracing -}}
{{- if $tracing.collector.address -}}
tracing:
  random_sampling:
    value: {{ mulf $tracing.samplingRatio 100 }}
  provider:
    name: envoy.tracers.opentelemetry
    typed_config:
      "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
      grpc_service:
        envoy_grpc:
          cluster_name: otel_collector
        timeout: 1s
      service_name: {{ .service }}
{{- end -}}
{{- end -}}

{{/* With tracing.collector.address: the cluster of the OTLP/gRPC collector. */}}
{{- define "meshchat.envoy.collectorCluster" -}}
{{- $collector := .Values.tracing.collector -}}
{{- if $collector.address -}}
- name: otel_collector
  type: STRICT_DNS
  connect_timeout: {{ .Values.mesh.envoy.timeouts.connect }}
  {{- include "meshchat.envoy.upstreamHttp2" . | nindent 2 }}
  load_assignment:
    cluster_name: otel_collector
    endpoints:
      - lb_endpoints:
          - endpoint:
              address:
                socket_address:
                  address: {{ $collector.address | quote }}
                  port_value: {{ $collector.port }}
{{- end -}}
{{- end -}}

{{/*
An HTTP/2 connection manager for gRPC calls (the sidecars' inbound and outbound listeners, the
edge): (dict "ctx" $ "name" "inbound" "options" (dict ...more top-level fields) "rejectUnderscores" true
"virtualHosts" (YAML text of the route configuration's virtual hosts) "service" (the name its spans carry)).
*/}}
{{- define "meshchat.envoy.grpcConnectionManager" -}}
{{- $envoy := .ctx.Values.mesh.envoy -}}
- name: envoy.filters.network.http_connection_manager
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
    stat_prefix: {{ .name }}
    codec_type: HTTP2
    {{- with .options }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    max_request_headers_kb: {{ $envoy.limits.maxRequestHeadersKb }}
    stream_idle_timeout: {{ $envoy.timeouts.streamIdle }}
    request_headers_timeout: {{ $envoy.timeouts.requestHeaders }}
    # Paths as the routes see them: /a/../b and //b are /b; an escaped slash is refused.
    normalize_path: true
    merge_slashes: true
    path_with_escaped_slashes_action: REJECT_REQUEST
    common_http_protocol_options:
      idle_timeout: {{ $envoy.timeouts.connectionIdle }}
      max_headers_count: {{ $envoy.limits.maxHeadersCount }}
      {{- with .maxConnectionDuration }}
      max_connection_duration: {{ . }}
      {{- end }}
      {{- if .rejectUnderscores }}
      headers_with_underscores_action: REJECT_REQUEST
      {{- end }}
    http2_protocol_options:
      {{- include "meshchat.envoy.http2Options" .ctx | nindent 6 }}
    {{- include "meshchat.envoy.accessLog" .ctx | nindent 4 }}
    {{- with include "meshchat.envoy.tracing" (dict "ctx" .ctx "service" .service) }}
    {{- . | nindent 4 }}
    {{- end }}
    route_config:
      name: {{ .name }}
      virtual_hosts:
        {{- .virtualHosts | nindent 8 }}
    http_filters:
      {{- with .filters }}
      {{- . | nindent 6 }}
      {{- end }}
      {{- include "meshchat.envoy.router" .ctx | nindent 6 }}
{{- end -}}

{{/*
A plaintext connection manager for the kubelet and Prometheus, with small limits (mesh.envoy.plaintext):
few streams and small windows per connection, short timeouts: (dict "ctx" $ "name" "health" "headersKb" 8
"idle" "10s" "routes" (YAML text) "filters" (YAML text before the router)).
*/}}
{{- define "meshchat.envoy.plainConnectionManager" -}}
{{- $plain := .ctx.Values.mesh.envoy.plaintext -}}
- name: envoy.filters.network.http_connection_manager
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
    stat_prefix: {{ .name }}
    codec_type: AUTO
    max_request_headers_kb: {{ .headersKb }}
    stream_idle_timeout: {{ .idle }}
    request_headers_timeout: {{ .ctx.Values.mesh.envoy.timeouts.requestHeaders }}
    normalize_path: true
    merge_slashes: true
    common_http_protocol_options:
      idle_timeout: {{ $plain.connectionIdle }}
      max_headers_count: 32
      max_connection_duration: {{ $plain.maxConnectionDuration }}
      headers_with_underscores_action: REJECT_REQUEST
    http2_protocol_options:
      max_concurrent_streams: {{ $plain.maxConcurrentStreams }}
      initial_stream_window_size: {{ int $plain.windowSize }}
      initial_connection_window_size: {{ int $plain.windowSize }}
    route_config:
      name: {{ .name }}
      virtual_hosts:
        - name: {{ .name }}
          domains: ["*"]
          routes:
            {{- .routes | nindent 12 }}
            - match:
                prefix: /
              direct_response:
                status: 404
    http_filters:
      {{- with .filters }}
      {{- . | nindent 6 }}
      {{- end }}
      {{- include "meshchat.envoy.router" .ctx | nindent 6 }}
{{- end -}}

{{/*
The health listener, for the kubelet's probes only: /livez while Envoy runs; each of .checks
answers 200 only while every host of its cluster passes that cluster's health check (a sidecar:
/healthz follows the app's gRPC health, /livez/app whether the app answers at all); without
checks, /healthz answers while Envoy runs (the edge). Outside the global connection limit, so that
a flood of the listeners that take calls cannot fail the probes: (dict "ctx" $ "listen" {address, port}
"checks" (list (dict "path" "/healthz" "cluster" "local_app"))).
*/}}
{{- define "meshchat.envoy.healthListener" -}}
{{- $routes := list (dict "match" (dict "path" "/livez") "direct_response" (dict "status" 200 "body" (dict "inline_string" "live\n"))) -}}
{{- $filters := list -}}
{{- range .checks -}}
{{- $filters = append $filters (include "meshchat.envoy.healthCheckFilter" . | fromYamlArray | first) -}}
{{- end -}}
{{- if not .checks -}}
{{- $routes = append $routes (dict "match" (dict "path" "/healthz") "direct_response" (dict "status" 200 "body" (dict "inline_string" "ok\n"))) -}}
{{- end -}}
{{- include "meshchat.envoy.listenerAddress" (dict "name" "health" "listen" .listen) }}
  per_connection_buffer_limit_bytes: 8192
  ignore_global_conn_limit: true
  filter_chains:
    - filters:
        {{- $manager := dict "ctx" .ctx "name" "health" "headersKb" 8 "idle" "10s" "routes" (toYaml $routes) }}
        {{- if $filters }}
        {{- $_ := set $manager "filters" (toYaml $filters) }}
        {{- end }}
        {{- include "meshchat.envoy.plainConnectionManager" $manager | nindent 8 }}
{{- end -}}

{{/* A health_check filter: .path answers 200 only while every host of .cluster passes its health check, else 503. */}}
{{- define "meshchat.envoy.healthCheckFilter" -}}
- name: envoy.filters.http.health_check
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck
    pass_through_mode: false
    headers:
      - name: ":path"
        string_match:
          exact: {{ .path }}
    cluster_min_healthy_percentages:
      {{ .cluster }}:
        value: 100
{{- end -}}

{{/* A GET-only route to a cluster of the metrics listener: (dict "path" "/metrics" "cluster" "local_metrics"). */}}
{{- define "meshchat.envoy.metricsRoute" -}}
- match:
    path: {{ .path }}
    headers:
      - name: ":method"
        string_match:
          exact: GET
  route:
    cluster: {{ .cluster }}
    timeout: 10s
{{- end -}}

{{/*
The metrics listener (plaintext): Envoy's /stats/prometheus, and the app's /metrics when .appMetrics;
nothing else of the admin interface. Outside the global connection limit, like the health listener:
(dict "ctx" $ "listen" {address, port} "appMetrics" true).
*/}}
{{- define "meshchat.envoy.metricsListener" -}}
{{- $routes := "" -}}
{{- if .appMetrics -}}
{{- $routes = include "meshchat.envoy.metricsRoute" (dict "path" "/metrics" "cluster" "local_metrics") -}}
{{- end -}}
{{- $routes = printf "%s\n%s" $routes (include "meshchat.envoy.metricsRoute" (dict "path" "/stats/prometheus" "cluster" "envoy_admin")) | trim -}}
{{- include "meshchat.envoy.listenerAddress" (dict "name" "metrics" "listen" .listen) }}
  per_connection_buffer_limit_bytes: {{ .ctx.Values.mesh.envoy.limits.perConnectionBufferLimitBytes }}
  ignore_global_conn_limit: true
  filter_chains:
    - filters:
        {{- include "meshchat.envoy.plainConnectionManager" (dict "ctx" .ctx "name" "metrics" "headersKb" 16 "idle" "30s" "routes" $routes) | nindent 8 }}
{{- end -}}

{{/* The gRPC services that need no token, as path prefixes: health and (both versions of) reflection. */}}
{{- define "meshchat.envoy.publicPrefixes" -}}
health:
  - /grpc.health.v1.Health/
reflection:
  - /grpc.reflection.v1.ServerReflection/
  - /grpc.reflection.v1alpha.ServerReflection/
{{- end -}}

{{/*
The routes of a gRPC service's calls: (dict "ctx" $ "cluster" "chat" "api" (an entry of meshchat.grpcApi)
"prefixes" (list "/") "retries" true "split" true "public" true "reflection" true "rateLimited" true).
A long-lived stream has no route timeout, only an idle timeout that its heartbeats reset. With
.retries (routes towards other pods), every call is retried on another pod when it never reached
one (connect failure, refused stream), and the idempotent calls also when the connection was reset
or the pod answered UNAVAILABLE (it was stopping). With .split, streaming calls go to
<cluster>_streaming and, with .public, health and reflection to <cluster>_public (each cluster
with its own circuit breaker); without .reflection, reflection is answered UNIMPLEMENTED here.
With .rateLimited, each route names its class (unary, streaming, public) in its metadata, for the
per-client rate limits.
*/}}
{{- define "meshchat.envoy.grpcRoutes" -}}
{{- $envoy := .ctx.Values.mesh.envoy -}}
{{- $split := .split | default false -}}
{{- $streaming := ternary (printf "%s_streaming" .cluster) .cluster (and $split (gt (len .api.streaming) 0)) -}}
{{- $public := ternary (printf "%s_public" .cluster) .cluster (and $split (.public | default false)) -}}
{{- if .public }}
{{- $prefixes := include "meshchat.envoy.publicPrefixes" . | fromYaml }}
{{- range $prefixes.health }}
- match:
    prefix: {{ . }}
  {{- include "meshchat.envoy.routeClass" (dict "route" $ "class" "public") | nindent 2 }}
  route:
    cluster: {{ $public }}
    timeout: {{ $envoy.timeouts.request }}
    {{- if $.retries }}
    {{- include "meshchat.envoy.retryPolicy" (dict "ctx" $.ctx "on" "connect-failure,refused-stream") | nindent 4 }}
    {{- end }}
{{- end }}
{{- range $prefixes.reflection }}
- match:
    prefix: {{ . }}
  {{- if $.reflection }}
  {{- include "meshchat.envoy.routeClass" (dict "route" $ "class" "public") | nindent 2 }}
  route:
    cluster: {{ $public }}
    timeout: {{ $envoy.timeouts.request }}
    {{- if $.retries }}
    {{- include "meshchat.envoy.retryPolicy" (dict "ctx" $.ctx "on" "connect-failure,refused-stream") | nindent 4 }}
    {{- end }}
  {{- else }}
  # Reflection is off (edge.reflection.enabled): HTTP 404, which gRPC clients see as UNIMPLEMENTED.
  direct_response:
    status: 404
  {{- end }}
{{- end }}
{{- end }}
{{- range .api.streaming }}
- match:
    path: {{ . }}
  {{- include "meshchat.envoy.routeClass" (dict "route" $ "class" "streaming") | nindent 2 }}
  route:
    cluster: {{ $streaming }}
    timeout: 0s
    idle_timeout: {{ $envoy.timeouts.streamingIdle }}
{{- end }}
{{- if .retries }}
{{- range .api.idempotent }}
- match:
    path: {{ . }}
  {{- include "meshchat.envoy.routeClass" (dict "route" $ "class" "unary") | nindent 2 }}
  route:
    cluster: {{ $.cluster }}
    timeout: {{ $envoy.timeouts.request }}
    {{- include "meshchat.envoy.retryPolicy" (dict "ctx" $.ctx "on" "connect-failure,refused-stream,reset,cancelled,unavailable") | nindent 4 }}
{{- end }}
{{- end }}
{{- range .prefixes }}
- match:
    prefix: {{ . | quote }}
  {{- include "meshchat.envoy.routeClass" (dict "route" $ "class" "unary") | nindent 2 }}
  route:
    cluster: {{ $.cluster }}
    timeout: {{ $envoy.timeouts.request }}
    {{- if $.retries }}
    {{- include "meshchat.envoy.retryPolicy" (dict "ctx" $.ctx "on" "connect-failure,refused-stream") | nindent 4 }}
    {{- end }}
{{- end }}
{{- end -}}

{{/* A route's class in its metadata, read by the per-client rate limits (only when .route.rateLimited): (dict "route" (grpcRoutes' arguments) "class" "unary"). */}}
{{- define "meshchat.envoy.routeClass" -}}
{{- if .route.rateLimited }}
metadata:
  filter_metadata:
    meshchat:
      class: {{ .class }}
{{- end }}
{{- end -}}

{{/* A route's retry policy: retry .on these conditions, each time on a pod not tried yet. */}}
{{- define "meshchat.envoy.retryPolicy" -}}
{{- $retries := .ctx.Values.mesh.envoy.retries -}}
retry_policy:
  retry_on: {{ .on }}
  num_retries: {{ $retries.attempts }}
  retry_back_off:
    base_interval: {{ $retries.backOffBase }}
    max_interval: {{ $retries.backOffMax }}
  retry_host_predicate:
    - name: envoy.retry_host_predicates.previous_hosts
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
  host_selection_retry_max_attempts: 3
{{- end -}}

{{/*
The inbound listener (mTLS): only the allowed callers' certificates pass; every call goes to the
app, through the cluster of its class. The x-forwarded-for header a caller (the edge, an ingress
controller, a Gateway) set passes to the app unchanged: this listener does not use the peer's
address (use_remote_address is off), so it neither appends to the header nor trusts it.
*/}}
{{- define "meshchat.envoy.inboundListener" -}}
{{- $ctx := .ctx -}}
{{- $v := index $ctx.Values .component -}}
{{- $callers := list (include "meshchat.identity" (dict "ctx" $ctx "component" "ingress")) -}}
{{- range .workload.callers -}}
{{- $callers = append $callers (include "meshchat.identity" (dict "ctx" $ctx "component" .)) -}}
{{- end -}}
{{- $callers = concat $callers $v.sidecar.extraAllowedCallers -}}
{{- $api := index (include "meshchat.grpcApi" . | fromYaml) .component -}}
{{- $routes := dict "ctx" $ctx "cluster" "local_app" "api" $api "prefixes" (list "/") "split" true "public" true "reflection" true -}}
{{- $hosts := list (dict "name" .component "domains" (list "*") "routes" (include "meshchat.envoy.grpcRoutes" $routes | fromYamlArray)) -}}
{{- $options := dict "server_header_transformation" "PASS_THROUGH" "forward_client_cert_details" "SANITIZE_SET" "set_current_client_cert_details" (dict "dns" true "uri" true) -}}
{{- include "meshchat.envoy.listenerAddress" (dict "name" "inbound" "listen" $v.sidecar.inbound) }}
  per_connection_buffer_limit_bytes: {{ $ctx.Values.mesh.envoy.limits.perConnectionBufferLimitBytes }}
  filter_chains:
    - transport_socket_connect_timeout: {{ $ctx.Values.mesh.envoy.timeouts.handshake }}
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            {{- include "meshchat.envoy.commonTlsContext" (dict "ctx" $ctx "sans" $callers) | nindent 12 }}
      filters:
        {{- include "meshchat.envoy.grpcConnectionManager" (dict "ctx" $ctx "name" "inbound" "options" $options "rejectUnderscores" true "virtualHosts" (toYaml $hosts) "service" .service) | nindent 8 }}
{{- end -}}

{{/* An outbound listener (plaintext on loopback): the app's way to another service, over mTLS from here on: (dict "ctx" $ "upstream" (an entry of .workload.upstreams) "service" (the name its spans carry)). */}}
{{- define "meshchat.envoy.outboundListener" -}}
{{- $name := printf "outbound_%s" .upstream.name -}}
{{- $api := index (include "meshchat.grpcApi" .ctx | fromYaml) .upstream.name -}}
{{- $routes := dict "ctx" .ctx "cluster" .upstream.name "api" $api "prefixes" (list "/") "retries" true -}}
{{- $hosts := list (dict "name" .upstream.name "domains" (list "*") "routes" (include "meshchat.envoy.grpcRoutes" $routes | fromYamlArray)) -}}
{{- include "meshchat.envoy.listenerAddress" (dict "name" $name "listen" .upstream.listener) }}
  per_connection_buffer_limit_bytes: {{ .ctx.Values.mesh.envoy.limits.perConnectionBufferLimitBytes }}
  filter_chains:
    - filters:
        {{- include "meshchat.envoy.grpcConnectionManager" (dict "ctx" .ctx "name" $name "virtualHosts" (toYaml $hosts) "service" .service) | nindent 8 }}
{{- end -}}

{{/*
The app's gRPC server on loopback, for one class of calls: (dict "ctx" $ "component" "auth" "name"
"local_app" "class" "unary" "healthChecked" true). local_app (unary calls) is health-checked with
grpc.health.v1.Health; /healthz follows that check.
*/}}
{{- define "meshchat.envoy.localAppCluster" -}}
{{- $envoy := .ctx.Values.mesh.envoy -}}
{{- $v := index .ctx.Values .component -}}
- name: {{ .name }}
  type: STATIC
  connect_timeout: {{ $envoy.timeouts.connect }}
  per_connection_buffer_limit_bytes: {{ $envoy.limits.perConnectionBufferLimitBytes }}
  {{- include "meshchat.envoy.upstreamHttp2" .ctx | nindent 2 }}
  {{- include "meshchat.envoy.circuitBreakers" . | nindent 2 }}
  {{- if .healthChecked }}
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
  {{- end }}
  load_assignment:
    cluster_name: {{ .name }}
    endpoints:
      - lb_endpoints:
          - endpoint:
              address:
                socket_address:
                  address: {{ $v.listen.address | quote }}
                  port_value: {{ $v.listen.port }}
{{- end -}}

{{/*
The same app server, for liveness: healthy while it answers grpc.health.v1.Health/Check at all,
SERVING or NOT_SERVING (an HTTP/2 POST of an empty HealthCheckRequest; gRPC answers HTTP 200
whatever the status). Unlike local_app, it does not follow the app's dependencies.
*/}}
{{- define "meshchat.envoy.localAppLivenessCluster" -}}
{{- $envoy := .ctx.Values.mesh.envoy -}}
{{- $v := index .ctx.Values .component -}}
- name: local_app_liveness
  type: STATIC
  connect_timeout: {{ $envoy.timeouts.connect }}
  per_connection_buffer_limit_bytes: {{ $envoy.limits.perConnectionBufferLimitBytes }}
  {{- include "meshchat.envoy.upstreamHttp2" .ctx | nindent 2 }}
  {{- include "meshchat.envoy.circuitBreakers" (dict "ctx" .ctx "class" "public") | nindent 2 }}
  health_checks:
    - timeout: {{ $envoy.healthCheck.timeout }}
      interval: {{ $envoy.healthCheck.interval }}
      no_traffic_interval: {{ $envoy.healthCheck.interval }}
      no_traffic_healthy_interval: {{ $envoy.healthCheck.interval }}
      unhealthy_threshold: {{ $envoy.healthCheck.unhealthyThreshold }}
      healthy_threshold: {{ $envoy.healthCheck.healthyThreshold }}
      http_health_check:
        path: /grpc.health.v1.Health/Check
        method: POST
        codec_client_type: HTTP2
        # A gRPC frame: not compressed, length 0 (an empty HealthCheckRequest, service "").
        send:
          text: "0000000000"
        request_headers_to_add:
          - header:
              key: content-type
              value: application/grpc
          - header:
              key: te
              value: trailers
  load_assignment:
    cluster_name: local_app_liveness
    endpoints:
      - lb_endpoints:
          - endpoint:
              address:
                socket_address:
                  address: {{ $v.listen.address | quote }}
                  port_value: {{ $v.listen.port }}
{{- end -}}

{{/*
Another service's sidecars over mTLS, every pod behind a DNS name; only a certificate with that
service's identity is accepted: (dict "ctx" $ "name" "auth" "address" "..." "port" "8443" "sni" "..."
"identity" "..." "class" "unary"; the class of calls whose circuit breaker it has, unary when empty).
*/}}
{{- define "meshchat.envoy.meshCluster" -}}
{{- $envoy := .ctx.Values.mesh.envoy -}}
- name: {{ .name }}
  type: STRICT_DNS
  dns_lookup_family: V4_PREFERRED
  dns_refresh_rate: 5s
  lb_policy: LEAST_REQUEST
  connect_timeout: {{ $envoy.timeouts.connect }}
  per_connection_buffer_limit_bytes: {{ $envoy.limits.perConnectionBufferLimitBytes }}
  {{- include "meshchat.envoy.upstreamHttp2" .ctx | nindent 2 }}
  {{- include "meshchat.envoy.circuitBreakers" (dict "ctx" .ctx "class" (.class | default "unary")) | nindent 2 }}
  {{- include "meshchat.envoy.outlierDetection" .ctx | nindent 2 }}
  transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
      sni: {{ .sni | quote }}
      common_tls_context:
        {{- include "meshchat.envoy.commonTlsContext" (dict "ctx" .ctx "sans" (list .identity)) | nindent 8 }}
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
The bootstrap (envoy.yaml) of one component's sidecar: (dict "ctx" $ "component" "auth" "workload" ...);
the component's specifics (callers, upstreams) come from .workload.
*/}}
{{- define "meshchat.envoy.bootstrap" -}}
{{- $ctx := .ctx -}}
{{- $v := index $ctx.Values .component -}}
{{- $envoy := $ctx.Values.mesh.envoy -}}
{{- $name := include "meshchat.componentName" . -}}
{{- $service := printf "%s-envoy" $name -}}
# Envoy sidecar of {{ $name }}, rendered by the meshchat chart. Do not edit: change the values.
{{- $listeners := list "inbound" -}}
{{- range .workload.upstreams -}}
{{- $listeners = append $listeners (printf "outbound_%s" .name) -}}
{{- end }}
{{ include "meshchat.envoy.node" (dict "ctx" $ctx "name" $name "admin" $v.sidecar.admin "memory" $envoy.resources.limits.memory "listeners" $listeners) }}
static_resources:
  listeners:
    {{- include "meshchat.envoy.inboundListener" (merge (dict "service" $service) .) | nindent 4 }}
    {{- range .workload.upstreams }}
    {{- include "meshchat.envoy.outboundListener" (dict "ctx" $ctx "upstream" . "service" $service) | nindent 4 }}
    {{- end }}
    {{- $checks := list (dict "path" "/healthz" "cluster" "local_app") (dict "path" "/livez/app" "cluster" "local_app_liveness") }}
    {{- include "meshchat.envoy.healthListener" (dict "ctx" $ctx "listen" $v.sidecar.health "checks" $checks) | nindent 4 }}
    {{- include "meshchat.envoy.metricsListener" (dict "ctx" $ctx "listen" $v.sidecar.metrics "appMetrics" true) | nindent 4 }}
  clusters:
    {{- $api := index (include "meshchat.grpcApi" $ctx | fromYaml) .component }}
    {{- include "meshchat.envoy.localAppCluster" (merge (dict "name" "local_app" "class" "unary" "healthChecked" true) .) | nindent 4 }}
    {{- if $api.streaming }}
    {{- include "meshchat.envoy.localAppCluster" (merge (dict "name" "local_app_streaming" "class" "streaming") .) | nindent 4 }}
    {{- end }}
    {{- include "meshchat.envoy.localAppCluster" (merge (dict "name" "local_app_public" "class" "public") .) | nindent 4 }}
    {{- include "meshchat.envoy.localAppLivenessCluster" . | nindent 4 }}
    {{- include "meshchat.envoy.staticCluster" (dict "name" "local_metrics" "address" $v.metricsListen.address "port" $v.metricsListen.port "connectTimeout" $envoy.timeouts.connect) | nindent 4 }}
    {{- include "meshchat.envoy.staticCluster" (dict "name" "envoy_admin" "address" $v.sidecar.admin.address "port" $v.sidecar.admin.port "connectTimeout" $envoy.timeouts.connect) | nindent 4 }}
    {{- range .workload.upstreams }}
    {{- include "meshchat.envoy.meshCluster" (merge (dict "ctx" $ctx) .) | nindent 4 }}
    {{- end }}
    {{- with include "meshchat.envoy.collectorCluster" $ctx }}
    {{- . | nindent 4 }}
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
