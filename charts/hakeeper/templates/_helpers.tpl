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

{{/*
The securityContext of every pod the chart runs with the operator image (the operator, the
uninstall hook): Pod Security `restricted`, uid 65532 (the image's user).
*/}}
{{- define "hakeeper.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* ...and of their containers: no capability, no escalation, a read-only root. */}}
{{- define "hakeeper.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
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
# Every verb below is one the e2e suite saw the operator use, in the API server's audit log
# (tests/e2e/test_least_privilege.py), or is named there with the reason it is not requested.
# The three kinds the operator reconciles: kopf lists and watches them, and patches its
# finalizer and progress annotations onto them.
- apiGroups: ["hakeeper.io"]
  resources: ["loadbalancerpools", "replicateddatabases", "degradationpolicies"]
  verbs: ["list", "watch", "patch"]
# A DegradationPolicy whose tier names a pool's request classes reads that pool, to report the
# classes it does not define.
- apiGroups: ["hakeeper.io"]
  resources: ["loadbalancerpools"]
  verbs: ["get"]
# Their status: observedGeneration, conditions, and what each controller reports.
- apiGroups: ["hakeeper.io"]
  resources: ["loadbalancerpools/status", "replicateddatabases/status", "degradationpolicies/status"]
  verbs: ["patch"]
# The objects the operator owns carry ownerReferences with blockOwnerDeletion, which clusters
# running the OwnerReferencesPermissionEnforcement admission plugin allow only to who may
# update the owner's finalizers (the e2e API server runs it).
- apiGroups: ["hakeeper.io"]
  resources: ["loadbalancerpools/finalizers", "replicateddatabases/finalizers", "degradationpolicies/finalizers"]
  verbs: ["update"]
# Events for every action taken (failover, shed, restore, invalid spec).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# Pods: backends come with their pods, pool status counts balancer pods, and the database
# controller moves the role label on database pods. The balancer agent's Role grants pods
# patch, held here (a Role may grant only what its writer holds).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "patch"]
# A database's rollout restarts its members one at a time through the Eviction API, which
# honours the database's PodDisruptionBudget.
- apiGroups: [""]
  resources: ["pods/eviction"]
  verbs: ["create"]
# Owned objects, written by server-side apply: patch, and create when the apply creates the
# object (the API server authorizes that as create). Removed by garbage collection with their
# owner. Balancer Services and ConfigMaps, database Services, the agent's ServiceAccount.
# The kinds pools and databases own are listed and watched: one edited or deleted is applied again (drift
# repair), instead of every object being re-applied blind.
# The operator reads back its own ConfigMaps (a pool's server slots, a database's re-seeds);
# the agent's Role grants configmaps get/watch, held here.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["list", "watch", "create", "patch"]
# Services: also read, for the address of a haproxy pool that an engine dns pool publishes.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
# An engine dns pool's records: one ExternalDNS DNSEndpoint per pool, by server-side apply (the
# answer carries ExternalDNS's status.observedGeneration), deleted when there is no target. The
# kind is ExternalDNS's (its CRD, not this chart's); without it the writes answer 404 and the
# pool says so.
- apiGroups: ["externaldns.k8s.io"]
  resources: ["dnsendpoints"]
  verbs: ["create", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Credentials: read the user's database Secrets, a DegradationPolicy's bearer token and a
# LoadBalancerPool's TLS Secret (checked before balancers mount it), create generated ones;
# patch adds the application's password to a generated Secret made before it existed. Never
# listed, watched or deleted.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
# Backends of a pool are the endpoints of its Service; a database's -primary Service is
# checked the same way before its old primary's clients are disconnected.
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list", "watch"]
# Balancer Deployments (HAProxy) and DaemonSets (keepalived), database StatefulSets (read for
# a rollout's revisions). DegradationPolicy lists the Deployments it may shed, scales them by
# patching spec.replicas, and reads one it shed in a namespace it no longer covers.
# A pool of engine lvs that is refused (lvs.allowedNamespaces, lvs.allowedImages) has its
# keepalived DaemonSet deleted: no privileged pod runs for it.
- apiGroups: ["apps"]
  resources: ["daemonsets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Database StatefulSets are watched like the other objects the operator applies (drift repair).
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch"]
# A database's scheduled backups (spec.backup): its CronJobs by server-side apply, read to
# suspend one whose configuration turned invalid, deleted when spec.backup no longer asks for
# them; their Jobs listed for the runs' outcomes (each pod's termination message is its report);
# the claim of a volume target read to say when it is missing.
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get"]
# Deployments: the balancers are Deployments; DegradationPolicy keeps every Deployment in an index
# (a watch) and reads a policy's namespaces from it, instead of listing them at each evaluation.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Balancer and database PodDisruptionBudgets; a pool of one balancer has none (it would
# block every node drain), so going down to one deletes it.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# The balancer agent's Role and RoleBinding. No `bind` or `escalate`: the API server lets
# a subject grant rules it holds itself, and the agent's Role grants only such rules
# (configmaps get/watch, pods patch).
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["list", "watch", "create", "patch"]
# kopf peering: every replica lists and watches the peering object and patches its own
# heartbeat into it; only the highest-priority live replica acts.
- apiGroups: ["kopf.dev"]
  resources: [{{ . | quote }}]
  verbs: ["list", "watch", "patch"]
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
