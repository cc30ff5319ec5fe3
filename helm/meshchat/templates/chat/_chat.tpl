{{/* vim: set filetype=mustache: */}}
{{/*
What sets the chat workload apart, as data for the shared helpers of _workload.tpl and _envoy.tpl
(a YAML mapping; read it with fromYaml); the keys are those of meshchat.auth.workload. chat
reaches auth through its sidecar: a plaintext listener on loopback (MESHCHAT_AUTH_ADDR) and an
mTLS cluster towards auth's sidecars that accepts only auth's identity.
*/}}
{{- define "meshchat.chat.workload" -}}
{{- $v := .Values.chat -}}
{{- $auth := dict "ctx" . "component" "auth" -}}
{{- $workload := dict
  "env" (list
    (dict "name" "MESHCHAT_AUTH_ADDR" "value" (include "meshchat.hostPort" $v.sidecar.outbound))
    (dict "name" "MESHCHAT_AUTHZ_MODE" "value" $v.authzMode)
    (dict "name" "MESHCHAT_MAX_MESSAGE_LENGTH" "value" (toString $v.maxMessageLength)))
  "secretMounts" list
  "callers" list
  "upstreams" (list (dict
    "name" "auth"
    "listener" $v.sidecar.outbound
    "address" (default (include "meshchat.headlessFqdn" $auth) $v.sidecar.authUpstream.address)
    "port" (toString ($v.sidecar.authUpstream.port | default .Values.auth.service.port))
    "sni" (include "meshchat.serviceHost" $auth)
    "identity" (include "meshchat.identity" $auth)))
-}}
{{- if not $v.autoscaling.enabled -}}
{{- $_ := set $workload "replicas" (int $v.replicaCount) -}}
{{- end -}}
{{- toYaml $workload -}}
{{- end -}}
