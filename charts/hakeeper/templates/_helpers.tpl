{{/* Names are cut at 63 characters: the limit of a label value and of most object names. */}}

{{- define "hakeeper.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name. A release whose name already holds the chart name keeps it as is,
so `helm install hakeeper charts/hakeeper` names everything `hakeeper`.
*/}}
{{- define "hakeeper.fullname" -}}
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

{{- define "hakeeper.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hakeeper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hakeeper.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hakeeper.labels" -}}
helm.sh/chart: {{ include "hakeeper.chart" . }}
{{ include "hakeeper.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: hakeeper
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "hakeeper.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hakeeper.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image; the balancer agent sidecar runs the same one. */}}
{{- define "hakeeper.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* `hakeeper run` arguments, one per line of a YAML list. */}}
{{- define "hakeeper.args" -}}
- run
{{- range .Values.watchNamespaces }}
- -n
- {{ . | quote }}
{{- else }}
- -A
{{- end }}
- --peering
- {{ .Values.peering.name | quote }}
- --liveness
- "http://0.0.0.0:8080/healthz"
- --log-format
- {{ .Values.logFormat | quote }}
- --metrics-port
- {{ .Values.metrics.port | quote }}
{{- if .Values.verbose }}
- -v
{{- end }}
{{- end }}

{{/*
The rules the operator needs wherever it serves objects: the ClusterRole holds them
cluster-wide, or each watched namespace's Role holds them. Argument: the kopf peering
resource, "clusterkopfpeerings" or "kopfpeerings", the only rule that differs.
*/}}
{{- define "hakeeper.namespacedRules" -}}
# The three kinds the operator reconciles. patch/update: kopf writes its finalizer and
# progress annotations on the objects themselves.
- apiGroups: ["hakeeper.io"]
  resources: ["loadbalancerpools", "replicateddatabases", "degradationpolicies"]
  verbs: ["get", "list", "watch", "patch", "update"]
# Their status: observedGeneration, conditions, and what each controller reports.
- apiGroups: ["hakeeper.io"]
  resources: ["loadbalancerpools/status", "replicateddatabases/status", "degradationpolicies/status"]
  verbs: ["get", "patch", "update"]
# The objects the operator owns carry ownerReferences with blockOwnerDeletion, which clusters
# running the OwnerReferencesPermissionEnforcement admission plugin allow only to who may
# update the owner's finalizers.
- apiGroups: ["hakeeper.io"]
  resources: ["loadbalancerpools/finalizers", "replicateddatabases/finalizers", "degradationpolicies/finalizers"]
  verbs: ["update"]
# Events for every action taken (failover, shed, restore, invalid spec): kopf posts core
# v1 Events; the operator's own code may post through events.k8s.io/v1. The agent's Role
# grants events create, held here.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Pods: pool status counts balancer pods, backends come with their pods, and the database
# controller moves the role label on database pods. The balancer agent's Role grants pods
# get/patch, held here.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "patch"]
# A database's rollout restarts its members one at a time through the Eviction API, which
# honours the database's PodDisruptionBudget.
- apiGroups: [""]
  resources: ["pods/eviction"]
  verbs: ["create"]
# Owned objects, written by server-side apply (patch, and create when missing) and removed
# when no longer wanted: balancer Services and config ConfigMaps, database Services, and the
# agent's ServiceAccount. The agent's Role grants configmaps get/list/watch, held here.
- apiGroups: [""]
  resources: ["services", "configmaps", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Database credentials: read the user's Secrets, create generated ones. Never updated or
# deleted by the operator (garbage collection removes those it owns).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Backends of a pool are the endpoints of its Service.
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
# Balancer Deployments (HAProxy) and DaemonSets (keepalived on the nodes), database StatefulSets.
- apiGroups: ["apps"]
  resources: ["deployments", "daemonsets", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# DegradationPolicy scales low-priority Deployments to zero and back through /scale.
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["get", "patch", "update"]
# Balancer and database PodDisruptionBudgets.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# The balancer agent's Role and RoleBinding. No `bind` or `escalate`: the API server lets
# a subject grant rules it holds itself, and the agent's Role grants only such rules
# (configmaps get/list/watch, pods get/patch, events create).
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Leases: not used yet; reserved for Lease-based leader election between operator
# replicas, the planned successor of kopf peering.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch", "create", "update", "patch"]
# kopf peering: every replica lists and watches the peering object and patches its own
# heartbeat into it; only the highest-priority live replica acts.
- apiGroups: ["kopf.dev"]
  resources: [{{ . | quote }}]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}

{{/* Cluster-scoped reads in both modes: kopf's scan of the cluster's resources. */}}
{{- define "hakeeper.crdRules" -}}
# kopf lists the CRDs at start and watches them, so a kind installed later is served.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end }}

{{/* Cluster-scoped reads when namespaced: kopf follows the namespaces it was given. */}}
{{- define "hakeeper.namespaceRules" -}}
# With --namespace, kopf lists and watches namespaces to start and stop serving a watched
# one as it is created or deleted (without, it warns and assumes they all exist).
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
