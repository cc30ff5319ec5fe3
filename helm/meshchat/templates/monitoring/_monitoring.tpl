{{/*
What prometheus-operator scrapes (the PodMonitor and the ServiceMonitor say the same): from every
auth and chat pod the app's /metrics, and from every auth, chat and edge pod Envoy's
/stats/prometheus, both on the sidecar's plaintext metrics listener. Each target carries the
pod's part-of and component labels (app_kubernetes_io_part_of, app_kubernetes_io_component),
by which the alerts (files/prometheus/rules.yaml) and the dashboard tell meshchat's Envoys from
other Envoys.
*/}}

{{/* Who may scrape the metrics ports, as a YAML list of NetworkPolicy peers: networkPolicy.metricsPeers and every pod of metrics.monitoringNamespace. */}}
{{- define "meshchat.monitoring.peers" -}}
{{- $peers := .Values.networkPolicy.metricsPeers -}}
{{- with .Values.metrics.monitoringNamespace -}}
{{- $peers = append $peers (dict "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" .))) -}}
{{- end -}}
{{- toYaml $peers -}}
{{- end -}}

{{/* A plain Prometheus's scrape annotations of a pod, with metrics.podAnnotations: (dict "ctx" $ "port" N "path" "/metrics"). */}}
{{- define "meshchat.monitoring.podAnnotations" -}}
{{- if .ctx.Values.metrics.podAnnotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: {{ .path }}
{{- end -}}
{{- end -}}

{{/* The workloads that have a metrics port. */}}
{{- define "meshchat.monitoring.selector" -}}
matchLabels:
  app.kubernetes.io/name: {{ include "meshchat.name" . }}
  app.kubernetes.io/instance: {{ .Release.Name }}
matchExpressions:
  - key: app.kubernetes.io/component
    operator: In
    values: [auth, chat{{ if .Values.edge.enabled }}, edge{{ end }}]
{{- end -}}

{{/* The endpoints of a PodMonitor or ServiceMonitor: (dict "ctx" $ "port" "metrics" "role" "pod"). */}}
{{- define "meshchat.monitoring.endpoints" -}}
{{- $m := .ctx.Values.metrics -}}
- port: {{ .port }}
  path: /metrics
  interval: {{ $m.interval }}
  scheme: http
  # Only auth and chat run an app; the edge is an Envoy alone.
  relabelings:
    - action: keep
      sourceLabels: [__meta_kubernetes_{{ .role }}_label_app_kubernetes_io_component]
      regex: auth|chat
- port: {{ .port }}
  path: /stats/prometheus
  interval: {{ $m.interval }}
  scheme: http
{{- end -}}
