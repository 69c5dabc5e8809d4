{{/* Names and labels shared by every template. */}}

{{- define "moat.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "moat.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries; the component (agent, collector) is added by the caller. */}}
{{- define "moat.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "moat.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "moat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "moat.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "moat.agent.fullname" -}}
{{- printf "%s-agent" (include "moat.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "moat.collector.fullname" -}}
{{- printf "%s-collector" (include "moat.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "moat.agent.serviceAccountName" -}}
{{- if .Values.agent.serviceAccount.create -}}
{{- default (include "moat.agent.fullname" .) .Values.agent.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.agent.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "moat.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* Secret names of the TLS material, generated or existing. */}}
{{- define "moat.tls.serverSecret" -}}
{{- if eq .Values.tls.source "existing" -}}
{{- .Values.tls.serverSecret -}}
{{- else -}}
{{- printf "%s-collector-tls" (include "moat.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "moat.tls.clientSecret" -}}
{{- if eq .Values.tls.source "existing" -}}
{{- .Values.tls.clientSecret -}}
{{- else -}}
{{- printf "%s-agent-tls" (include "moat.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "moat.collector.tokensSecret" -}}
{{- default (printf "%s-collector-tokens" (include "moat.fullname" .)) .Values.collector.tokens.existingSecret -}}
{{- end -}}

{{- define "moat.collector.storeSecret" -}}
{{- default (printf "%s-collector-store" (include "moat.fullname" .)) .Values.collector.store.postgres.existingSecret -}}
{{- end -}}

{{- define "moat.agent.hashKeySecret" -}}
{{- default (printf "%s-agent-hash-key" (include "moat.fullname" .)) .Values.agent.hashKey.existingSecret -}}
{{- end -}}

{{/* The collector URL agents ship to: the Service's cluster DNS name. */}}
{{- define "moat.collector.url" -}}
{{- printf "%s://%s.%s.svc:%d" (ternary "https" "http" .Values.tls.enabled) (include "moat.collector.fullname" .) .Release.Namespace (int .Values.collector.port) -}}
{{- end -}}

{{/* A config file given as a YAML object or as a string, rendered as file text. */}}
{{- define "moat.fileText" -}}
{{- if kindIs "string" . -}}
{{- . -}}
{{- else -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}

{{/* Whether a config value is set (a non-empty object or string). */}}
{{- define "moat.isSet" -}}
{{- if . -}}true{{- end -}}
{{- end -}}
