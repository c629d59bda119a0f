{{/* Chart name. */}}
{{- define "chaperone.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object's name. */}}
{{- define "chaperone.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "chaperone.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "chaperone.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chaperone
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: include with (list . "webhook"). */}}
{{- define "chaperone.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "chaperone.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Image reference: include with (list . .Values.webhook.image). */}}
{{- define "chaperone.image" -}}
{{- $ := index . 0 -}}
{{- $img := index . 1 -}}
{{- printf "%s:%s" $img.repository (default $.Chart.AppVersion $img.tag) }}
{{- end }}

{{- define "chaperone.webhookName" -}}{{ include "chaperone.fullname" . }}-webhook{{- end }}
{{- define "chaperone.serverName" -}}{{ include "chaperone.fullname" . }}-server{{- end }}
{{- define "chaperone.nodeName" -}}{{ include "chaperone.fullname" . }}-node{{- end }}
{{- define "chaperone.sidecarConfigName" -}}{{ include "chaperone.fullname" . }}-sidecar{{- end }}

{{/* NATS URL the sidecars and the node agent use. */}}
{{- define "chaperone.natsURL" -}}
{{- if .Values.sidecar.natsURL }}
{{- .Values.sidecar.natsURL }}
{{- else if .Values.server.nats.externalURL }}
{{- .Values.server.nats.externalURL }}
{{- else }}
{{- printf "nats://%s.%s.svc:%d" (include "chaperone.serverName" .) .Release.Namespace (int .Values.server.natsPort) }}
{{- end }}
{{- end }}

{{/* The sidecar values with the NATS URL filled in: the file the webhook reads. */}}
{{- define "chaperone.sidecarValues" -}}
{{- $v := deepCopy .Values.sidecar }}
{{- $_ := set $v "natsURL" (include "chaperone.natsURL" .) }}
{{- toYaml $v }}
{{- end }}

{{/* Restricted container security context of the chart's own pods. */}}
{{- define "chaperone.restricted" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}
