{{/* vim: set filetype=mustache: */}}
{{/*
What the auth and the chat workloads share: the Deployment (the app container and its Envoy
sidecar), the Service, the ServiceAccount, the Envoy ConfigMap and the PodDisruptionBudget.
Each takes (dict "ctx" $ "component" "auth"|"chat"); the Deployment and the ConfigMap also take
"workload", what sets the component apart, as data (auth/_auth.tpl, chat/_chat.tpl): nothing
here branches on the component's name.
*/}}

{{/* The environment both services read, as a YAML list: (dict "ctx" $ "component" "auth"). */}}
{{- define "meshchat.commonEnv" -}}
{{- $v := index .ctx.Values .component -}}
{{- $env := list
  (dict "name" "MESHCHAT_LISTEN" "value" (include "meshchat.hostPort" $v.listen))
  (dict "name" "MESHCHAT_METRICS_LISTEN" "value" (include "meshchat.hostPort" $v.metricsListen))
  (dict "name" "MESHCHAT_LOG_LEVEL" "value" $v.logLevel)
  (dict "name" "MESHCHAT_GRACE_PERIOD" "value" (toString $v.gracePeriodSeconds))
  (dict "name" "MESHCHAT_ISSUER" "value" .ctx.Values.auth.issuer)
  (dict "name" "MESHCHAT_AUDIENCE" "value" .ctx.Values.auth.audience)
-}}
{{- $env = concat $env (include "meshchat.databaseEnv" . | fromYamlArray) -}}
{{- $env = append $env (dict "name" "OTEL_SERVICE_NAME" "value" (printf "meshchat-%s" .component)) -}}
{{- $env = concat $env (include "meshchat.tracingEnv" .ctx | fromYamlArray) -}}
{{- $env = append $env (dict "name" "HOME" "value" "/tmp") -}}
{{- toYaml $env -}}
{{- end -}}

{{/*
With tracing.collector.address, the standard OpenTelemetry variables the apps export spans by
(OTLP/gRPC in plaintext, as the Envoys do) and sample by: the traceparent's decision when there
is one (the Envoy in front of the app made it), else tracing.samplingRatio.
*/}}
{{- define "meshchat.tracingEnv" -}}
{{- $tracing := .Values.tracing -}}
{{- if $tracing.collector.address -}}
{{- toYaml (list
  (dict "name" "OTEL_EXPORTER_OTLP_ENDPOINT" "value" (printf "http://%s:%v" $tracing.collector.address $tracing.collector.port))
  (dict "name" "OTEL_EXPORTER_OTLP_INSECURE" "value" "true")
  (dict "name" "OTEL_TRACES_SAMPLER" "value" "parentbased_traceidratio")
  (dict "name" "OTEL_TRACES_SAMPLER_ARG" "value" (toString $tracing.samplingRatio))) -}}
{{- else -}}
[]
{{- end -}}
{{- end -}}

{{/*
Where a service finds its database, as a YAML list of variables: MESHCHAT_DATABASE_URL_FILE, the
file of the Secret holding the whole URL, mounted whole at databaseUrlDir (meshchat.databaseMounts),
so that no password is an environment variable; or, with postgresql.existingSecret, the bundled
PostgreSQL's URL without a password and the password as PGPASSWORD (which libpq reads) from that
Secret, so that the chart renders no password.
*/}}
{{- define "meshchat.databaseEnv" -}}
{{- $pg := .ctx.Values.postgresql -}}
{{- if and $pg.enabled $pg.existingSecret -}}
{{- $db := index $pg .component -}}
{{- $url := printf "postgresql://%s@%s:%v/%s" $db.username (include "meshchat.postgresql.host" .ctx) $pg.port $db.database -}}
{{- toYaml (list
  (dict "name" "MESHCHAT_DATABASE_URL" "value" $url)
  (dict "name" "PGPASSWORD" "valueFrom" (dict "secretKeyRef" (dict "name" $pg.existingSecret "key" (printf "%s-password" .component))))) -}}
{{- else -}}
{{- $secret := splitList " " (include "meshchat.databaseUrlSecret" .) -}}
{{- toYaml (list (dict "name" "MESHCHAT_DATABASE_URL_FILE" "value" (printf "%s/%s" .ctx.Values.databaseUrlDir (index $secret 1)))) -}}
{{- end -}}
{{- end -}}

{{/* The Secret mounts the database needs, as a YAML list like .workload.secretMounts: the URL's Secret, unless PGPASSWORD carries the password; with CloudNativePG also its CA certificate (items: never the CA's key). */}}
{{- define "meshchat.databaseMounts" -}}
{{- $pg := .ctx.Values.postgresql -}}
{{- if and $pg.enabled $pg.existingSecret -}}
{{- toYaml list -}}
{{- else -}}
{{- $secret := splitList " " (include "meshchat.databaseUrlSecret" .) -}}
{{- $mounts := list (dict "name" "database-url" "secretName" (index $secret 0) "mountPath" .ctx.Values.databaseUrlDir) -}}
{{- if .ctx.Values.cloudnativePg.enabled -}}
{{- $ca := dict "name" "database-ca" "secretName" (printf "%s-ca" (include "meshchat.cnpg.name" .ctx)) "mountPath" .ctx.Values.cloudnativePg.caDir -}}
{{- $mounts = append $mounts (set $ca "items" (list (dict "key" "ca.crt" "path" "ca.crt"))) -}}
{{- end -}}
{{- toYaml $mounts -}}
{{- end -}}
{{- end -}}

{{/* The app container's environment: the common one, the component's own (.workload.env), then extraEnv. */}}
{{- define "meshchat.appEnv" -}}
{{- $common := include "meshchat.commonEnv" . | fromYamlArray -}}
{{- toYaml (concat $common .workload.env (index .ctx.Values .component).extraEnv) -}}
{{- end -}}

{{/*
The Envoy sidecar, a native sidecar (an init container that keeps running): it starts before the
app and stops after it. Envoy closes its listeners at once on SIGTERM (hot restart is off, and
--drain-time-s would drain only on a hot restart or an admin-triggered drain); that is fine here,
since the kubelet stops the sidecar only once its app has exited.
*/}}
{{- define "meshchat.sidecarContainer" -}}
{{- $v := index .ctx.Values .component -}}
{{- $envoy := .ctx.Values.mesh.envoy -}}
- name: envoy
  image: {{ include "meshchat.image" (dict "image" $envoy.image "default" "latest") }}
  imagePullPolicy: {{ $envoy.image.pullPolicy }}
  restartPolicy: Always
  args:
    - --config-path
    - {{ printf "%s/envoy.yaml" $envoy.configDir }}
    - --log-level
    - {{ $envoy.logLevel }}
    - --disable-hot-restart
  ports:
    - name: mesh
      containerPort: {{ $v.sidecar.inbound.port }}
      protocol: TCP
    - name: health
      containerPort: {{ $v.sidecar.health.port }}
      protocol: TCP
    - name: metrics
      containerPort: {{ $v.sidecar.metrics.port }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: /livez
      port: health
    periodSeconds: 1
    failureThreshold: 30
  livenessProbe:
    httpGet:
      path: /livez
      port: health
    periodSeconds: 10
    timeoutSeconds: 2
    failureThreshold: 3
  readinessProbe:
    httpGet:
      path: /healthz
      port: health
    periodSeconds: 5
    timeoutSeconds: 2
    failureThreshold: 2
  resources:
    {{- toYaml $envoy.resources | nindent 4 }}
  securityContext:
    {{- include "meshchat.containerSecurityContext" .ctx | nindent 4 }}
  volumeMounts:
    - name: envoy-config
      mountPath: {{ $envoy.configDir }}
      readOnly: true
    - name: mesh-certs
      mountPath: {{ $envoy.certDir }}
      readOnly: true
{{- end -}}

{{/*
The probes of an app container, all through its sidecar's health listener (the app listens on
loopback only). Startup and liveness ask /livez/app: is the app's gRPC server answering at all
(SERVING or not), so that a database outage never gets the app killed. Readiness asks /healthz:
is it SERVING, dependencies included, so that only such pods get calls. The port is a number: a
named port resolves only among the probed container's own ports.
*/}}
{{- define "meshchat.appProbes" -}}
{{- $port := (index .ctx.Values .component).sidecar.health.port -}}
startupProbe:
  httpGet:
    path: /livez/app
    port: {{ $port }}
  periodSeconds: 2
  failureThreshold: 90
readinessProbe:
  httpGet:
    path: /healthz
    port: {{ $port }}
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 2
livenessProbe:
  httpGet:
    path: /livez/app
    port: {{ $port }}
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 6
{{- end -}}

{{/*
A preStop pause of the given seconds (the kubelet's sleep action: no shell needed): at the start of a
pod's termination the container keeps serving while Services and the sidecars' DNS (refreshed
every 5 s) stop sending it new calls; SIGTERM follows.
*/}}
{{- define "meshchat.preStopSleep" -}}
lifecycle:
  preStop:
    sleep:
      seconds: {{ . }}
{{- end -}}

{{/* The Deployment of a component: (dict "ctx" $ "component" "auth" "workload" (the component's data, see auth/_auth.tpl)). */}}
{{- define "meshchat.deployment" -}}
{{- $ctx := .ctx -}}
{{- $v := index $ctx.Values .component -}}
{{- $base := dict "ctx" $ctx "component" .component -}}
{{- $env := include "meshchat.appEnv" . -}}
{{- $secretMounts := concat .workload.secretMounts (include "meshchat.databaseMounts" $base | fromYamlArray) -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  {{- include "meshchat.metadata" $base | nindent 2 }}
spec:
  {{- if hasKey .workload "replicas" }}
  replicas: {{ int .workload.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  selector:
    matchLabels:
      {{- include "meshchat.selectorLabels" $base | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "meshchat.labels" $base | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "meshchat.envoyConfigMap" . | sha256sum }}
        checksum/env: {{ $env | sha256sum }}
        {{- with include "meshchat.monitoring.podAnnotations" (dict "ctx" .ctx "port" $v.sidecar.metrics.port "path" "/metrics") }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "meshchat.serviceAccountName" $base }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- if $ctx.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml $ctx.Values.imagePullSecrets | nindent 8 }}
      {{- end }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      securityContext:
        {{- include "meshchat.podSecurityContext" (dict "ctx" $ctx) | nindent 8 }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      initContainers:
        {{- include "meshchat.sidecarContainer" $base | nindent 8 }}
      containers:
        - name: {{ .component }}
          image: {{ include "meshchat.image" (dict "image" $v.image "default" $ctx.Chart.AppVersion) }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            - serve
          env:
            {{- $env | nindent 12 }}
          {{- include "meshchat.appProbes" $base | nindent 10 }}
          {{- include "meshchat.preStopSleep" $v.preStopSleepSeconds | nindent 10 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- include "meshchat.containerSecurityContext" $ctx | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- range $secretMounts }}
            - name: {{ .name }}
              mountPath: {{ .mountPath }}
              readOnly: true
            {{- end }}
      volumes:
        - name: envoy-config
          configMap:
            name: {{ printf "%s-envoy" (include "meshchat.componentName" $base) }}
            defaultMode: 0444
        # The whole Secret as a directory (no subPath), so the kubelet swaps rotated files in place.
        - name: mesh-certs
          secret:
            secretName: {{ include "meshchat.meshSecretName" $base }}
            defaultMode: 0440
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- range $secretMounts }}
        - name: {{ .name }}
          secret:
            secretName: {{ .secretName }}
            defaultMode: 0440
            {{- with .items }}
            items:
              {{- toYaml . | nindent 14 }}
            {{- end }}
        {{- end }}
{{- end -}}

{{/* The ConfigMap with the sidecar's bootstrap and SDS files: (dict "ctx" $ "component" "auth" "workload" ...). */}}
{{- define "meshchat.envoyConfigMap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  {{- include "meshchat.metadata" (dict "ctx" .ctx "component" .component "name" (printf "%s-envoy" (include "meshchat.componentName" .))) | nindent 2 }}
data:
  envoy.yaml: |
    {{- include "meshchat.envoy.bootstrap" . | nindent 4 }}
  sds-certificate.yaml: |
    {{- include "meshchat.envoy.sdsCertificate" .ctx | nindent 4 }}
  sds-ca.yaml: |
    {{- include "meshchat.envoy.sdsCa" .ctx | nindent 4 }}
{{- end -}}

{{/* The Service: the mTLS port (the sidecar's inbound listener) and the metrics port. */}}
{{- define "meshchat.service" -}}
{{- $v := index .ctx.Values .component -}}
apiVersion: v1
kind: Service
metadata:
  {{- include "meshchat.metadata" (dict "ctx" .ctx "component" .component "annotations" $v.service.annotations) | nindent 2 }}
spec:
  type: {{ $v.service.type }}
  selector:
    {{- include "meshchat.selectorLabels" . | nindent 4 }}
  ports:
    # Numeric target ports: the ports belong to the sidecar, an init container.
    - name: grpc-mesh
      port: {{ $v.service.port }}
      targetPort: {{ $v.sidecar.inbound.port }}
      protocol: TCP
    - name: http-metrics
      port: {{ $v.service.metricsPort }}
      targetPort: {{ $v.sidecar.metrics.port }}
      protocol: TCP
{{- end -}}

{{/* A headless Service with the same ports: its DNS name lists every ready pod, so that Envoy
(chat's outbound cluster, the edge) balances requests and streams across pods instead of sending
them all down one HTTP/2 connection to one ClusterIP. */}}
{{- define "meshchat.headlessService" -}}
{{- $v := index .ctx.Values .component -}}
apiVersion: v1
kind: Service
metadata:
  {{- include "meshchat.metadata" (dict "ctx" .ctx "component" .component "name" (printf "%s-headless" (include "meshchat.componentName" .))) | nindent 2 }}
spec:
  type: ClusterIP
  clusterIP: None
  selector:
    {{- include "meshchat.selectorLabels" . | nindent 4 }}
  ports:
    - name: grpc-mesh
      port: {{ $v.service.port }}
      targetPort: {{ $v.sidecar.inbound.port }}
      protocol: TCP
{{- end -}}

{{/* The ServiceAccount (no API token is mounted: the pods do not call the Kubernetes API). */}}
{{- define "meshchat.serviceAccount" -}}
{{- $v := index .ctx.Values .component -}}
{{- if $v.serviceAccount.create -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  {{- include "meshchat.metadata" (dict "ctx" .ctx "component" .component "name" (include "meshchat.serviceAccountName" .) "annotations" $v.serviceAccount.annotations) | nindent 2 }}
automountServiceAccountToken: false
{{- end -}}
{{- end -}}

{{/* The PodDisruptionBudget. */}}
{{- define "meshchat.pdb" -}}
{{- $v := index .ctx.Values .component -}}
{{- if $v.pdb.create -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  {{- include "meshchat.metadata" . | nindent 2 }}
spec:
  {{- if $v.pdb.minAvailable }}
  minAvailable: {{ $v.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $v.pdb.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "meshchat.selectorLabels" . | nindent 6 }}
{{- end -}}
{{- end -}}
