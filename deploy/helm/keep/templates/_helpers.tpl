{{/* The chart's name. */}}
{{- define "keep.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's resource name: the StatefulSet, the client Service. */}}
{{- define "keep.fullname" -}}
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

{{/* The headless Service that gives every node its DNS name. */}}
{{- define "keep.headless" -}}
{{- printf "%s-headless" (include "keep.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The DNS domain of the nodes: <headless>.<namespace>.svc.<clusterDomain>. */}}
{{- define "keep.peerDomain" -}}
{{- printf "%s.%s.svc.%s" (include "keep.headless" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/* The --host of node N (the argument): its stable DNS name and port. */}}
{{- define "keep.nodeHost" -}}
{{- printf "%s-%d.%s:%d" (include "keep.fullname" .root) (int .ordinal) (include "keep.peerDomain" .root) (int .root.Values.port) -}}
{{- end -}}

{{- define "keep.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "keep.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "keep.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keep.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "keep.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "keep.hsmSecret" -}}
{{- default (printf "%s-hsm" (include "keep.fullname" .)) .Values.hsm.existingSecret -}}
{{- end -}}

{{- define "keep.adminSecret" -}}
{{- default (printf "%s-admin" (include "keep.fullname" .)) .Values.admin.existingSecret -}}
{{- end -}}

{{- define "keep.tlsSecret" -}}
{{- default (printf "%s-tls" (include "keep.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{/* Where the TLS Secret is mounted, in the nodes and the join Job. */}}
{{- define "keep.tlsDir" -}}/etc/keep/tls{{- end -}}

{{/*
keep.validate fails the rendering on values that would break the cluster:
an even number of nodes, or a PodDisruptionBudget that lets a majority go.
*/}}
{{- define "keep.validate" -}}
{{- $n := int .Values.replicaCount -}}
{{- if or (lt $n 1) (eq (mod $n 2) 0) -}}
{{- fail (printf "replicaCount must be odd (1, 3, 5, …): %d nodes tolerate no more failures than %d, and split votes" $n (sub $n 1)) -}}
{{- end -}}
{{- if and .Values.podDisruptionBudget.enabled (ne (toString .Values.podDisruptionBudget.maxUnavailable) "") -}}
{{- $max := int .Values.podDisruptionBudget.maxUnavailable -}}
{{- if or (lt $max 0) (le (sub $n $max) (div $n 2)) -}}
{{- fail (printf "podDisruptionBudget.maxUnavailable %d with %d nodes would leave no majority: at most %d" $max $n (div (sub $n 1) 2)) -}}
{{- end -}}
{{- end -}}
{{- if not (has .Values.antiAffinity (list "soft" "hard" "")) -}}
{{- fail (printf "antiAffinity must be soft, hard or empty, not %q" .Values.antiAffinity) -}}
{{- end -}}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.certManager.issuerRef.name) -}}
{{- fail "tls.certManager.issuerRef.name is required with tls.certManager.enabled" -}}
{{- end -}}
{{- end -}}

{{/* The PodDisruptionBudget's maxUnavailable: the value, or (N-1)/2. */}}
{{- define "keep.maxUnavailable" -}}
{{- if ne (toString .Values.podDisruptionBudget.maxUnavailable) "" -}}
{{- int .Values.podDisruptionBudget.maxUnavailable -}}
{{- else -}}
{{- div (sub (int .Values.replicaCount) 1) 2 -}}
{{- end -}}
{{- end -}}
