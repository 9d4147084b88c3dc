{{/* Names ----------------------------------------------------------------------- */}}

{{- define "pumphouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pumphouse.fullname" -}}
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

{{- define "pumphouse.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pumphouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pumphouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pumphouse.labels" -}}
helm.sh/chart: {{ include "pumphouse.chart" . }}
{{ include "pumphouse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pumphouse
{{- end }}

{{- define "pumphouse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pumphouse.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pumphouse.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/* Values read from the pumphouse configuration ------------------------------------ */}}

{{- define "pumphouse.settings" -}}
{{- toYaml ((.Values.config | default dict).Settings | default dict) }}
{{- end }}

{{/* The metrics port: the port of Settings.MetricsAddress (default 0.0.0.0:9400). */}}
{{- define "pumphouse.metricsPort" -}}
{{- $settings := include "pumphouse.settings" . | fromYaml }}
{{- $address := $settings.MetricsAddress | default "0.0.0.0:9400" | toString }}
{{- $host := regexReplaceAll ":[0-9]+$" $address "" | trimAll "[]" }}
{{- if has $host (list "127.0.0.1" "localhost" "::1") }}
{{- fail (printf "config.Settings.MetricsAddress %s listens on loopback only: the probes and Prometheus cannot reach it (use 0.0.0.0:PORT)" $address) }}
{{- end }}
{{- $port := regexFind "[0-9]+$" $address }}
{{- if not $port }}
{{- fail (printf "config.Settings.MetricsAddress %s has no port" $address) }}
{{- end }}
{{- $port }}
{{- end }}

{{/* Settings.ShutdownTimeoutSeconds (default 30), as a number of seconds. */}}
{{- define "pumphouse.shutdownTimeout" -}}
{{- $settings := include "pumphouse.settings" . | fromYaml }}
{{- $settings.ShutdownTimeoutSeconds | default 30 | float64 | ceil | int }}
{{- end }}

{{/* terminationGracePeriodSeconds: above the shutdown timeout, always. */}}
{{- define "pumphouse.terminationGracePeriod" -}}
{{- $timeout := include "pumphouse.shutdownTimeout" . | int }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $timeout 15 }}
{{- else }}
{{- $grace := .Values.terminationGracePeriodSeconds | int }}
{{- if le $grace $timeout }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be above config.Settings.ShutdownTimeoutSeconds (%d): Kubernetes would kill pumphouse before in-flight batches finish" $grace $timeout) }}
{{- end }}
{{- $grace }}
{{- end }}
{{- end }}

{{/* Refuse deployments that would process a stream twice or share a ReadWriteOnce volume. */}}
{{- define "pumphouse.checks" -}}
{{- $settings := include "pumphouse.settings" . | fromYaml }}
{{- $store := $settings.StateStore | default "sqlite:///./.pumphouse/state.db" | toString }}
{{- $multi := or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled }}
{{- if and $multi (hasPrefix "sqlite" $store) }}
{{- range ((.Values.config | default dict).EventSourceMappings | default list) }}
{{- $arn := .EventSourceArn | default "" | toString }}
{{- if or (contains ":kinesis:" $arn) (contains ":dynamodb:" $arn) }}
{{- fail (printf "mapping of %s: several replicas (replicaCount > 1 or autoscaling) with a SQLite state store would each process every shard; set config.Settings.StateStore to a redis:// URL" $arn) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $multi .Values.persistence.enabled (has "ReadWriteOnce" .Values.persistence.accessModes) }}
{{- fail "persistence with a ReadWriteOnce volume allows one replica only: use a Redis state store for several replicas" }}
{{- end }}
{{- end }}

{{/* The pumphouse configuration file, as rendered into the ConfigMap. */}}
{{- define "pumphouse.config" -}}
{{- toYaml (.Values.config | default dict) }}
{{- end }}
