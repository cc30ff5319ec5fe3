{{/* vim: set filetype=mustache: */}}
{{/*
What sets the auth workload apart, as data for the shared helpers of _workload.tpl and _envoy.tpl
(a YAML mapping; read it with fromYaml):
  replicas      the Deployment's replicas (absent: an autoscaler sets them)
  env           the auth service's own environment, after the common one; it trusts the last
                x-forwarded-for entry, since every call reaches it through its sidecar from a way
                in that sets that header (the edge, ingress-nginx, a Gateway) or from chat (none)
  secretMounts  Secrets mounted whole into the app container (name, secretName, mountPath)
  callers       components allowed to call auth besides the ways in (their sidecars' identities
                pass its inbound listener, their pods its NetworkPolicy), and sidecar.extraAllowedCallers
  upstreams     services the app reaches through its sidecar's outbound listeners (none)
*/}}
{{- define "meshchat.auth.workload" -}}
{{- $v := .Values.auth -}}
{{- $workload := dict
  "replicas" (int $v.replicaCount)
  "env" (list
    (dict "name" "MESHCHAT_KEYS_DIR" "value" $v.jwt.keysDir)
    (dict "name" "MESHCHAT_GENERATE_KEY" "value" "false")
    (dict "name" "MESHCHAT_ACCESS_TOKEN_TTL" "value" (toString $v.accessTokenTtlSeconds))
    (dict "name" "MESHCHAT_REFRESH_TOKEN_TTL" "value" (toString $v.refreshTokenTtlSeconds))
    (dict "name" "MESHCHAT_TRUST_FORWARDED_FOR" "value" "true")
    (dict "name" "MESHCHAT_SERVICE_CALLERS" "value" (include "meshchat.identity" (dict "ctx" . "component" "chat"))))
  "secretMounts" (list
    (dict "name" "jwt-keys" "secretName" (include "meshchat.jwtSecretName" .) "mountPath" $v.jwt.keysDir))
  "callers" (list "chat")
  "upstreams" list
-}}
{{- toYaml $workload -}}
{{- end -}}
