{{/* The chart's name, cut to the 63 characters a label value may hold. */}}
{{- define "feedbot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release-qualified name every object carries. */}}
{{- define "feedbot.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "feedbot.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "feedbot.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "feedbot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "feedbot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "feedbot.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{ include "feedbot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "feedbot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "feedbot.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "feedbot.secretName" -}}
{{- default (include "feedbot.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/*
SQLite is one file in one pod: several replicas would each write their own database, running
every check and sending every message once per replica. Refuse the combination outright.
*/}}
{{- define "feedbot.checkDatabase" -}}
{{- $url := toString .Values.config.database_url -}}
{{- $sqlite := or (hasPrefix "sqlite" $url) (contains ":-sqlite" $url) -}}
{{- if and (gt (int .Values.replicaCount) 1) $sqlite -}}
{{- fail "feedbot: replicaCount > 1 needs PostgreSQL, not SQLite: set config.database_url to ${FEEDBOT_DATABASE_URL} and FEEDBOT_DATABASE_URL=postgresql+psycopg://... in the Secret" -}}
{{- end -}}
{{- end -}}
