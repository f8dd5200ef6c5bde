{{/* The chart's name. */}}
{{- define "vigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Objects' name: the release name, with the chart's unless it holds it. */}}
{{- define "vigil.fullname" -}}
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

{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vigil.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "vigil.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: node-agent
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "vigil.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vigil.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vigil.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The agent's and the keeper's security context. */}}
{{- define "vigil.securityContext" -}}
runAsUser: 0
runAsGroup: 0
readOnlyRootFilesystem: true
{{- if .Values.securityContext.privileged }}
privileged: true
{{- else }}
privileged: false
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
  add:
  {{- range .Values.securityContext.capabilities }}
    - {{ . }}
  {{- end }}
seccompProfile:
  type: Unconfined
appArmorProfile:
  type: Unconfined
{{- end }}
{{- end }}

{{/* The notify fd keeper: `vigil agent` with VIGIL_NOTIFY_KEEPER set. */}}
{{- define "vigil.keeperContainer" -}}
name: notify-keeper
image: {{ include "vigil.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
command: [/usr/bin/vigil]
args: [agent]
{{- if .Values.keeper.nativeSidecar }}
restartPolicy: Always
{{- end }}
env:
  # `vigil agent` with this set is the keeper, serving this socket (seccomp.KeeperEnv).
  - name: VIGIL_NOTIFY_KEEPER
    value: {{ .Values.keeper.socket | quote }}
securityContext:
  # The keeper only holds fds it is sent: no capabilities.
  runAsUser: 0
  runAsGroup: 0
  readOnlyRootFilesystem: true
  privileged: false
  allowPrivilegeEscalation: false
  capabilities:
    drop: [ALL]
resources:
  {{- toYaml .Values.keeper.resources | nindent 2 }}
volumeMounts:
  - name: run
    mountPath: {{ .Values.hostPaths.run | trimSuffix "/" }}
{{- end }}
