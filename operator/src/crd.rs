//! The `NurFunction` custom resource (`nur.dev/v1alpha1`).
//!
//! Over 400 lines on purpose: most of it is the doc comments `kubectl
//! explain` shows, and the CRD's own tests.
//!
//! Every doc comment on a spec field becomes its `kubectl explain` text, so
//! each one says what the field does and what happens when it is left out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The port the function is served on when `spec.port` is not set.
pub const DEFAULT_PORT: i32 = 8080;

fn default_port() -> i32 {
    DEFAULT_PORT
}

/// A WebAssembly function served over TCP: a module in object storage, the
/// worker pods that serve it, and the Service in front of them.
// printcolumn(...) repeats `type_ = ...` by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "nur.dev",
    version = "v1alpha1",
    kind = "NurFunction",
    plural = "nurfunctions",
    shortname = "nurfn",
    namespaced,
    status = "NurFunctionStatus",
    derive = "PartialEq",
    doc = "A WebAssembly function served over TCP by nur-worker pods behind a Service.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.readyReplicas"
    ),
    printcolumn(name = "Digest", type_ = "string", json_path = ".status.module.digest"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".status.endpoint"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!(has(self.replicas) && has(self.autoscaling))").message(
    "set either replicas or autoscaling, not both"
))]
#[x_kube(validation = Rule::new("!(has(self.scaleToZero) && has(self.autoscaling))").message(
    "scaleToZero works with replicas, not with autoscaling"
))]
#[x_kube(validation = Rule::new("!has(self.port) || self.port != 9090").message(
    "port 9090 is the worker's admin port (/healthz, /readyz, /metrics)"
))]
#[serde(rename_all = "camelCase")]
pub struct NurFunctionSpec {
    /// The module to serve: where it is stored, an optional digest pin and
    /// the Secret holding object-store credentials. Required.
    pub module: ModuleSpec,

    /// Number of worker pods. Default: 1 when autoscaling is not set. Must
    /// not be set together with autoscaling. `kubectl scale` sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,

    /// Scale worker pods on CPU with a HorizontalPodAutoscaler. Default: no
    /// autoscaling (a fixed number of replicas). Must not be set together
    /// with replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,

    /// TCP port the function is served on, by the pods and by the Service.
    /// Default: 8080. The admin port 9090 (/healthz, /readyz, /metrics) is
    /// reserved.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// The Service in front of the worker pods. Default: a ClusterIP
    /// Service without extra annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceSpec>,

    /// Limits the worker enforces on each connection and instance. Default:
    /// the worker's own defaults (memory 128Mi, timeout 30s,
    /// maxConnections 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsSpec>,

    /// CPU and memory requests and limits of the worker container. Default:
    /// the operator's --worker-resources (the Helm chart's worker.resources:
    /// requests cpu 100m, memory 64Mi), else none. Autoscaling needs a CPU
    /// request: the HorizontalPodAutoscaler measures CPU against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Worker container image for this function. Default: the image the
    /// operator was started with (`nur-operator run --worker-image`).
    /// Refused (Ready=False, SpecNotAllowed) unless the operator runs with
    /// --allow-image-override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// Node labels the worker pods must match. Default: none (any node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Tolerations of the worker pods. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    /// Affinity rules of the worker pods. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Secrets used to pull the worker image. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,

    /// Extra annotations on the worker pods. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_annotations: Option<BTreeMap<String, String>>,

    /// Where nur-gateway routes connections to this function: HTTP by
    /// host, path prefix and method, TLS by server name, or a gateway port
    /// of its own. A route another function already holds is not taken
    /// (the older function keeps it; Routed=False, RouteConflict). Default:
    /// none; the function is reached through its Service only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<RoutesSpec>,

    /// Scale to zero pods after idleAfter without a connection through
    /// nur-gateway; the gateway holds the next connection, has the
    /// function woken and forwards it once a pod is ready. Works with
    /// replicas (the number of pods when awake), not with autoscaling.
    /// Default: never scaled to zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_to_zero: Option<ScaleToZeroSpec>,

    /// The function's environment, as WASI's environ_get gives it: plain
    /// values, and values from a key of a Secret or ConfigMap in the same
    /// namespace. A Secret or ConfigMap used here must carry the label
    /// nur.dev/function-env: "true" (Ready=False, EnvSourceNotAllowed, until
    /// it does): a function's code can read its environment, and only
    /// those who may label a Secret choose to hand it to functions. The
    /// worker's own variables never reach the function. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub env: Option<Vec<EnvVarSpec>>,
}

/// One variable of the function's environment: exactly one of value and
/// valueFrom.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.value) != has(self.valueFrom)")
        .message("set exactly one of value and valueFrom")
)]
pub struct EnvVarSpec {
    /// The variable's name: letters, digits and underscores, not starting
    /// with a digit (a POSIX name). Required.
    #[schemars(
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"),
        length(min = 1, max = 128)
    )]
    pub name: String,

    /// The variable's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32768))]
    pub value: Option<String>,

    /// Where the value comes from: one key of a Secret or ConfigMap in the
    /// function's namespace, labelled nur.dev/function-env: "true".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvSourceSpec>,
}

/// A key of a Secret or of a ConfigMap: exactly one of the two.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.secretKeyRef) != has(self.configMapKeyRef)")
        .message("set exactly one of secretKeyRef and configMapKeyRef")
)]
pub struct EnvSourceSpec {
    /// A key of a Secret in the function's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,

    /// A key of a ConfigMap in the function's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,
}

/// One key of a Secret or ConfigMap.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    /// Name of the Secret or ConfigMap, in the function's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// The key whose value is the variable's.
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"), length(min = 1, max = 253))]
    pub key: String,
}

/// Where the module is and how to check it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModuleSpec {
    /// URL of the module: s3://bucket/key, gs://bucket/key,
    /// az://container/key or http(s)://host/path. A .wasm binary, WAT text
    /// or either one zstd-compressed. The operator fetches and checks it
    /// with the variables of credentialsSecret when set, else with its own
    /// object-store credentials. Paths and file:// URLs are refused unless
    /// the operator runs with --allow-file-modules, and so are loopback and
    /// link-local addresses unless it runs with --allow-local-storage. At
    /// most 2048 characters. Required.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,

    /// Expected sha256 of the stored object, 64 hex digits. Default: none;
    /// without a pin the operator follows new uploads and rolls the pods to
    /// each new digest. With a pin, an object that no longer matches is
    /// reported as ModuleValid=False and running pods are left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: Option<String>,

    /// Name of a Secret in the same namespace holding static object-store
    /// settings, which become environment variables of the worker: only
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
    /// AWS_REGION, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT,
    /// AWS_ALLOW_HTTP, AWS_VIRTUAL_HOSTED_STYLE_REQUEST,
    /// GOOGLE_SERVICE_ACCOUNT_KEY, and AZURE_STORAGE_ACCOUNT_NAME,
    /// _ACCOUNT_KEY, _ACCESS_KEY, _SAS_KEY, _SAS_TOKEN, _CLIENT_ID,
    /// _CLIENT_SECRET, _TENANT_ID, _ENDPOINT and AZURE_ALLOW_HTTP. Any other
    /// key sets ModuleValid=False (CredentialsKeyNotAllowed). The operator
    /// checks the module with these variables only, as the pods will fetch
    /// it; without a credential among them requests go unsigned. A missing
    /// Secret sets ModuleValid=False (CredentialsSecretNotFound).
    /// Default: none; the operator and the worker use the credentials of
    /// their environment (workload identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}

/// The gateway's routes to a function.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(
        "(has(self.http) && size(self.http) > 0) || (has(self.tls) && size(self.tls) > 0) || has(self.tcp)"
    )
        .message("routes needs at least one http, tls or tcp route")
)]
pub struct RoutesSpec {
    /// HTTP/1.1 routes, matched on the request line and the Host header;
    /// the longest matching pathPrefix wins. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub http: Vec<HttpRoute>,

    /// TLS routes by the ClientHello's server name; the gateway passes the
    /// bytes through and never decrypts. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tls: Vec<TlsRoute>,

    /// A gateway port that carries this function's connections alone.
    /// Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpRoute>,
}

/// An HTTP route. Every field narrows it; with none it takes every request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    /// The Host header the request must carry (without a port), a DNS name
    /// in lower case. Default: any host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    ))]
    #[schemars(length(max = 253))]
    pub host: Option<String>,

    /// The start of the request path, from `/`. `/hello` takes `/hello`,
    /// `/hello/` and `/hello/x`, not `/helloworld`. Default: `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/[^\s?#]*$"))]
    #[schemars(length(max = 1024))]
    pub path_prefix: Option<String>,

    /// The request methods taken, in upper case (GET, POST...). Default:
    /// any method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16), inner(regex(pattern = r"^[A-Z]{1,16}$")))]
    pub methods: Option<Vec<String>>,
}

/// A TLS route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsRoute {
    /// The server name (SNI) of the ClientHello, a DNS name in lower case.
    /// Required.
    #[schemars(regex(
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    ))]
    #[schemars(length(min = 1, max = 253))]
    pub sni: String,
}

/// A TCP route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TcpRoute {
    /// The gateway port, within the gateway's --tcp-ports range (the
    /// chart's gateway.tcpPorts, default 7000-7009); outside it the route
    /// shows Routed=False (PortOutOfRange). Required.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// Scale to zero when idle.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleToZeroSpec {
    /// How long without a connection before the function goes to zero
    /// pods, a duration like 30s, 5m or 1h30m, counted from the last
    /// connection through a gateway or from when the function last became
    /// Ready or its compile Job ended, whichever is later. Required.
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub idle_after: String,
}

/// CPU-based autoscaling.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("!has(self.minReplicas) || self.maxReplicas >= self.minReplicas")
        .message("maxReplicas must be greater than or equal to minReplicas")
)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Fewest worker pods. Default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub min_replicas: Option<i32>,

    /// Most worker pods. Required; at least minReplicas.
    #[schemars(range(min = 1))]
    pub max_replicas: i32,

    /// Average CPU use, in percent of the CPU request, that the autoscaler
    /// aims for. Default: 80.
    #[serde(
        default,
        rename = "targetCPUUtilizationPercentage",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: Option<i32>,
}

/// The kind of Service.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ServiceType {
    /// A cluster-internal virtual IP.
    #[default]
    ClusterIP,
    /// A port on every node as well.
    NodePort,
    /// An external load balancer as well.
    LoadBalancer,
}

impl ServiceType {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

/// The Service in front of the worker pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[x_kube(
    validation = Rule::new("!has(self.headless) || !self.headless || !has(self.type) || self.type == 'ClusterIP'")
        .message("a headless Service is of type ClusterIP")
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// ClusterIP, NodePort or LoadBalancer. Default: ClusterIP. Other types
    /// than ClusterIP are refused (Ready=False, SpecNotAllowed) unless the
    /// operator's --allow-service-types lists them.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<ServiceType>,

    /// Annotations on the Service (for example for a cloud load balancer).
    /// Default: none. Refused (Ready=False, SpecNotAllowed) unless the
    /// operator runs with --allow-service-annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,

    /// A headless Service (clusterIP: None): DNS names the pods, and the
    /// function holds no ClusterIP, for a function reached only through a
    /// gateway that connects to pods directly. Default: false, a ClusterIP,
    /// so that clients in the cluster reach the function through the Service
    /// with nothing else installed. A Service's clusterIP cannot change:
    /// switching an existing function shows Ready=False (ApplyFailed) until
    /// its Service is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headless: Option<bool>,
}

/// Limits the worker enforces.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    /// Linear memory of one instance, a size like 64Mi or 1048576 (worker
    /// flag --memory-limit). Default: 128Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+([KMG]i?B?)?$"))]
    pub memory: Option<String>,

    /// Longest a connection may last, a duration like 30s, 500ms or 1m30s
    /// (worker flag --timeout). Default: 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub timeout: Option<String>,

    /// Connections one pod serves at once; more are accepted and wait,
    /// without an instance, for a slot (worker flag --max-connections).
    /// Default: 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_connections: Option<i32>,
}

/// What the operator last observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NurFunctionStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// ModuleValid (the module was fetched and follows the ABI), Available
    /// (the Deployment has its minimum of ready pods) and Ready (every
    /// desired pod runs the current module).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The module the pods were rolled to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<ModuleStatus>,

    /// Worker pods that exist (the scale subresource reads this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,

    /// Worker pods that are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,

    /// Label selector of the worker pods (the scale subresource reads this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// Where the function is served inside the cluster: NAME.NAMESPACE.svc:PORT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// A checked module.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModuleStatus {
    /// sha256:HEX of the stored object.
    pub digest: String,
    /// Size of the stored object in bytes.
    pub size: i64,
    /// What the module imports and exports, as the check saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abi: Option<AbiSummary>,
    /// The module's native code, compiled once by a Job of the operator
    /// and stored beside it, which every pod loads instead of compiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactStatus>,
}

/// Native code compiled once for every pod of a module digest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactStatus {
    /// sha256:HEX of the module it was compiled from.
    pub module_digest: String,
    /// Where it is stored: the module's URL with `.<digest>.artifact`.
    pub url: String,
    /// Its sha256 (hex), which the pods are pinned to; absent when
    /// compiling failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why there is no artifact (the pods then compile the module
    /// themselves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The ABI summary of a checked module (what `nur-worker check` prints).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AbiSummary {
    /// How the worker serves it: nur-abi (alloc and poll_stream for every
    /// chunk) or wasi-command (_start once per connection, stdin the
    /// client's bytes, stdout the answer).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Imported functions as `MODULE.NAME` (`nur.*` host functions, and
    /// `wasi_snapshot_preview1.*` where WASI is used).
    pub imports: Vec<String>,
    /// Exported names, with their kind: `NAME (func)`, `memory (memory)`;
    /// the first 64.
    pub exports: Vec<String>,
    /// The exported memory's initial size in 64 KiB pages.
    pub memory_pages: i64,
    /// Its maximum in pages, when the module sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_memory_pages: Option<i64>,
}

impl AbiSummary {
    /// Exports listed at most (a module may export thousands).
    pub const MAX_EXPORTS: usize = 64;

    pub fn of(summary: &nur_module::abi::Summary) -> Self {
        let imports = summary
            .imports
            .iter()
            .map(|i| format!("nur.{}", i.name))
            .chain(
                summary
                    .wasi
                    .iter()
                    .map(|w| format!("wasi_snapshot_preview1.{}", w.name)),
            )
            .collect();
        let exports = summary
            .exports
            .iter()
            .take(Self::MAX_EXPORTS)
            .map(|(name, kind)| format!("{name} ({kind})"))
            .collect();
        AbiSummary {
            kind: summary.kind.as_str().into(),
            imports,
            exports,
            memory_pages: summary.memory.initial_pages as i64,
            maximum_memory_pages: summary.memory.maximum_pages.map(|p| p as i64),
        }
    }
}

impl NurFunctionSpec {
    /// Desired replicas when not autoscaling.
    pub fn fixed_replicas(&self) -> Option<i32> {
        match self.autoscaling {
            Some(_) => None,
            None => Some(self.replicas.unwrap_or(1)),
        }
    }

    /// The smallest number of pods the function runs with.
    pub fn min_replicas(&self) -> i32 {
        match &self.autoscaling {
            Some(a) => a.min_replicas.unwrap_or(1),
            None => self.replicas.unwrap_or(1),
        }
    }
}

/// The CRD as YAML, as `nur-operator crd` prints it and crds/ holds it.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&NurFunction::crd()).expect("a CRD serializes to YAML")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// crds/nurfunction.yaml is generated; it must match the code.
    #[test]
    fn checked_in_crd_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/nurfunction.yaml");
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == crd_yaml(),
            "crds/nurfunction.yaml is stale or missing; run \
             `cargo run -p nur-operator -- crd > crds/nurfunction.yaml`"
        );
    }

    /// The Helm chart installs its own copy from charts/nur/crds/; it must
    /// match the code too.
    #[test]
    fn chart_crd_is_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../charts/nur/crds/nurfunction.yaml"
        );
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == crd_yaml(),
            "charts/nur/crds/nurfunction.yaml is stale or missing; run \
             `cargo run -p nur-operator -- crd | tee crds/nurfunction.yaml \
             > charts/nur/crds/nurfunction.yaml`"
        );
    }

    #[test]
    fn crd_has_subresources_rules_and_docs() {
        let y = crd_yaml();
        for want in [
            "shortNames:\n    - nurfn",
            "specReplicasPath: .spec.replicas",
            "labelSelectorPath: .status.selector",
            "status: {}",
            "!(has(self.replicas) && has(self.autoscaling))",
            "self.port != 9090",
            "self.maxReplicas >= self.minReplicas",
            "a headless Service is of type ClusterIP",
            "Default: 8080",
            "targetCPUUtilizationPercentage",
        ] {
            assert!(y.contains(want), "CRD lacks {want:?}");
        }
    }

    #[test]
    fn spec_defaults_and_names() {
        let f: NurFunctionSpec = serde_yaml::from_str(
            "module: {url: s3://b/k, credentialsSecret: s}\n\
             autoscaling: {maxReplicas: 3, targetCPUUtilizationPercentage: 70}\n\
             service: {type: LoadBalancer}\n",
        )
        .unwrap();
        assert_eq!(f.port, 8080);
        assert_eq!(f.module.credentials_secret.as_deref(), Some("s"));
        assert_eq!(
            f.autoscaling
                .as_ref()
                .unwrap()
                .target_cpu_utilization_percentage,
            Some(70)
        );
        assert_eq!(f.fixed_replicas(), None);
        assert_eq!(f.min_replicas(), 1);
        assert_eq!(f.service.unwrap().type_, Some(ServiceType::LoadBalancer));
    }
}
