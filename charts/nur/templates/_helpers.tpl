{{/* The chart's name. */}}
{{- define "nur.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name: the prefix of every object. Cluster-scoped objects
(ClusterRole, ClusterRoleBinding) carry it too, so two releases never share one.
*/}}
{{- define "nur.fullname" -}}
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

{{- define "nur.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object of the release. */}}
{{- define "nur.labels" -}}
helm.sh/chart: {{ include "nur.chart" . }}
{{ include "nur.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nur
{{- end }}

{{/* Labels that select the operator's pods. */}}
{{- define "nur.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nur.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "nur.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nur.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Lease the operators elect a leader on. */}}
{{- define "nur.leaseName" -}}
{{- include "nur.fullname" . }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest is set. */}}
{{- define "nur.image" -}}
{{- $tag := default .root.Chart.AppVersion .image.tag -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end }}

{{/* Labels of the gateway's objects. */}}
{{- define "nur.gateway.labels" -}}
helm.sh/chart: {{ include "nur.chart" . }}
{{ include "nur.gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nur
{{- end }}

{{/* Labels that select the gateway's pods. */}}
{{- define "nur.gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nur.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{/* The gateway's Deployment, Service and RBAC objects. */}}
{{- define "nur.gateway.fullname" -}}
{{- printf "%s-gateway" (include "nur.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "nur.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create }}
{{- default (include "nur.gateway.fullname" .) .Values.gateway.serviceAccount.name }}
{{- else }}
{{- required "gateway.serviceAccount.name is required when gateway.serviceAccount.create is false" .Values.gateway.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The namespace the gateway routes: its own value, else the operator's
(empty: every namespace). */}}
{{- define "nur.gateway.watchNamespace" -}}
{{- default .Values.operator.watchNamespace .Values.gateway.watchNamespace }}
{{- end }}

{{/*
The ports of gateway.tcpPorts ("7000-7009" or one port "7000"), as a JSON
list: the gateway listens on each, its Service has one port per each
(tcp-7000, ...). Refused: a range upside down, a port outside 1-65535 or one
the gateway itself holds (8000 http, 8443 tls, 9091 admin), and more than 98
ports (an EndpointSlice holds at most 100 ports, http and tls included).
*/}}
{{- define "nur.gateway.tcpPorts" -}}
{{- $spec := toString .Values.gateway.tcpPorts }}
{{- $parts := splitList "-" $spec }}
{{- if gt (len $parts) 2 }}
{{- fail (printf "gateway.tcpPorts %q: want a port or a range FIRST-LAST" $spec) }}
{{- end }}
{{- $first := index $parts 0 | trim | atoi }}
{{- $last := $first }}
{{- if eq (len $parts) 2 }}
{{- $last = index $parts 1 | trim | atoi }}
{{- end }}
{{- if or (lt $first 1) (gt $last 65535) (gt $first $last) }}
{{- fail (printf "gateway.tcpPorts %q: want ports 1-65535, the first not above the last" $spec) }}
{{- end }}
{{- if gt (add (sub $last $first) 1) 98 }}
{{- fail (printf "gateway.tcpPorts %q: at most 98 ports (a Service's EndpointSlice holds 100, http and tls included)" $spec) }}
{{- end }}
{{- range list 8000 8443 9091 }}
{{- if and (ge . $first) (le . $last) }}
{{- fail (printf "gateway.tcpPorts %q includes %d, a port of the gateway's own (8000 http, 8443 tls, 9091 admin)" $spec .) }}
{{- end }}
{{- end }}
{{- toJson (untilStep $first (add1 $last | int) 1) }}
{{- end }}

{{/*
Whole seconds (rounded up) of a duration of one unit: "500ms", "5s", "2m",
"1h"; values.schema.json admits only those.
*/}}
{{- define "nur.seconds" -}}
{{- $d := toString . }}
{{- if hasSuffix "ms" $d }}
{{- div (add (trimSuffix "ms" $d | atoi) 999) 1000 }}
{{- else if hasSuffix "s" $d }}
{{- trimSuffix "s" $d | atoi }}
{{- else if hasSuffix "m" $d }}
{{- mul (trimSuffix "m" $d | atoi) 60 }}
{{- else if hasSuffix "h" $d }}
{{- mul (trimSuffix "h" $d | atoi) 3600 }}
{{- else }}
{{- fail (printf "%q: want a duration like 500ms, 5s, 2m or 1h" $d) }}
{{- end }}
{{- end }}
