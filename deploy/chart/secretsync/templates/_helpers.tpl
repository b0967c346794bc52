{{/*
Names and labels shared by every template. With the default values they are the names and
labels of the kustomize base deploy/ (a test compares the two renderings).
*/}}

{{/* <name>-controller: ServiceAccount, Deployment, Service, PDB, Roles, --controller-name */}}
{{- define "secretsync.controllerName" -}}
{{- printf "%s-controller" .Values.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object (kustomize's `labels` in deploy/kustomization.yaml) */}}
{{- define "secretsync.labels" -}}
app.kubernetes.io/name: secretsync
app.kubernetes.io/part-of: secretsync
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The controller's pods; also the Deployment's, Service's and PDB's selector */}}
{{- define "secretsync.selectorLabels" -}}
app.kubernetes.io/name: secretsync
app.kubernetes.io/component: controller
{{- end -}}

{{/* Labels of the objects that belong to the controller's pods */}}
{{- define "secretsync.controllerLabels" -}}
{{ include "secretsync.labels" . }}
app.kubernetes.io/component: controller
{{- end -}}

{{/* The image: repository@digest, else repository:tag (default: the chart's appVersion) */}}
{{- define "secretsync.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* A value as text; a whole number read as a float (values files hold floats) is written
without a fraction or an exponent: 2097152, not 2.097152e+06 */}}
{{- define "secretsync.text" -}}
{{- if and (kindIs "float64" .) (eq (floor .) .) -}}
{{- int64 . -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}
