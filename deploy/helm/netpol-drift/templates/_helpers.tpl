{{/* Names and labels, as `helm create` and the widely used monitoring charts do. */}}
{{- define "netpol-drift.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "netpol-drift.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "netpol-drift.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "netpol-drift.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "netpol-drift.selectorLabels" -}}
app.kubernetes.io/name: {{ include "netpol-drift.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: serve
{{- end }}

{{- define "netpol-drift.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "netpol-drift.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "netpol-drift.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "netpol-drift.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "netpol-drift.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "netpol-drift.leaseName" -}}
{{- default (include "netpol-drift.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "netpol-drift.sqlite" -}}
{{- if not .Values.database.url }}true{{ end }}
{{- end }}

{{- define "netpol-drift.suiteConfigMap" -}}
{{- default (include "netpol-drift.fullname" .) .Values.suite.existingConfigMap }}
{{- end }}

{{/* The settings file (config/netpol-drift.yaml documents every key). Secrets come from the environment. */}}
{{- define "netpol-drift.settings" -}}
cluster:
  name: {{ .Values.clusterName | quote }}
suite: /etc/netpol-drift-suite/{{ .Values.suite.key }}
probe:
  image: {{ default (include "netpol-drift.image" .) .Values.probe.image | quote }}
  namespace: {{ .Release.Namespace | quote }}
  timeout_seconds: {{ .Values.probe.timeoutSeconds }}
  concurrency: {{ .Values.probe.concurrency }}
  run_deadline_seconds: {{ .Values.probe.runDeadlineSeconds }}
  per_node: {{ .Values.probe.perNode }}
  refused_means: {{ .Values.probe.refusedMeans }}
  udp_refused_means: {{ .Values.probe.udpRefusedMeans }}
  tcp_reset_means: {{ .Values.probe.tcpResetMeans }}
store:
  url: {{ default "sqlite:////var/lib/netpol-drift/netpol-drift.db" .Values.database.url | quote }}
  retention_days: {{ .Values.database.retentionDays }}
schedule:
  interval_seconds: {{ .Values.schedule.intervalSeconds }}
  jitter_seconds: {{ .Values.schedule.jitterSeconds }}
  debounce_seconds: {{ .Values.schedule.debounceSeconds }}
  shutdown_grace_seconds: {{ .Values.schedule.shutdownGraceSeconds }}
leader:
  enabled: {{ .Values.leaderElection.enabled }}
  lease_name: {{ include "netpol-drift.leaseName" . | quote }}
slack:
  channel: {{ if .Values.slack.channel }}{{ .Values.slack.channel | quote }}{{ else }}null{{ end }}
  base_url: {{ if .Values.slack.baseUrl }}{{ .Values.slack.baseUrl | quote }}{{ else }}null{{ end }}
web:
  listen: "0.0.0.0:8080"
  external_url: {{ if .Values.externalUrl }}{{ .Values.externalUrl | quote }}{{ else }}null{{ end }}
report:
  policy_reports: {{ .Values.policyReports.enabled }}
  name: {{ .Values.policyReports.name | quote }}
log_level: {{ .Values.logLevel }}
{{- end }}
