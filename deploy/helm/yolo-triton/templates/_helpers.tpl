{{- define "yolo-triton.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "yolo-triton.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "yolo-triton.labels" -}}
{{ include "yolo-triton.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "yolo-triton.image" -}}
{{ .repository }}:{{ .tag | default $.appVersion }}
{{- end -}}

{{- define "yolo-triton.adminSecret" -}}
{{ .Values.restrictedApi.existingSecret | default (printf "%s-admin" (include "yolo-triton.fullname" .)) }}
{{- end -}}

{{- define "yolo-triton.gpu" -}}
{{- if eq .Values.device "gpu" }}true{{ else if eq .Values.device "cpu" }}{{ else }}{{ fail "device must be gpu or cpu" }}{{ end -}}
{{- end -}}

{{- /* the detector target of python -m yolo_triton.repository, checked against the device */ -}}
{{- define "yolo-triton.target" -}}
{{- $allowed := ternary (list "tensorrt" "onnxruntime-backend") (list "onnxruntime-cpu") (eq .Values.device "gpu") -}}
{{- if not (has .Values.detector.target $allowed) }}{{ fail (printf "detector.target must be one of %s with device %s" (join ", " $allowed) .Values.device) }}{{ end -}}
{{ .Values.detector.target }}
{{- end -}}
