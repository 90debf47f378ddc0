{{- define "yolo-triton.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "yolo-triton.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "yolo-triton.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "yolo-triton.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{ .Values.serviceAccount.name | default (include "yolo-triton.fullname" .) }}
{{- else -}}
{{ .Values.serviceAccount.name | default "default" }}
{{- end -}}
{{- end -}}

{{- define "yolo-triton.selectorLabels" -}}
app.kubernetes.io/name: {{ include "yolo-triton.name" . }}
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

{{- /* Every container runs CuPy, nvImageCodec, ONNX Runtime or PyTorch, which write caches under
$HOME (CuPy's kernels, CUDA's JIT, PyTorch's, Ultralytics' settings): on the read-only root
filesystem they go to /tmp, the pod's writable emptyDir, or the GPU preprocess model fails to load */ -}}
{{- define "yolo-triton.cacheEnv" -}}
- {name: HOME, value: /tmp}
- {name: XDG_CACHE_HOME, value: /tmp/.cache}
- {name: CUPY_CACHE_DIR, value: /tmp/.cupy/kernel_cache}
- {name: CUDA_CACHE_PATH, value: /tmp/.nv/ComputeCache}
- {name: YOLO_CONFIG_DIR, value: /tmp/ultralytics}
{{- end -}}

{{- /* An ensemble to name in the notes: the first of the models file or of `models` */ -}}
{{- define "yolo-triton.firstModel" -}}
{{- $build := .Values.modelRepository.build -}}
{{- if ne .Values.modelRepository.source "build" -}}
<an ensemble of your repository>
{{- else if $build.modelsFile -}}
{{ keys (fromYaml $build.modelsFile) | sortAlpha | first }}
{{- else -}}
{{ splitList "," $build.models | first | trim }}
{{- end -}}
{{- end -}}
