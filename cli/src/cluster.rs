//! The cluster from the user's kubeconfig (`KUBECONFIG`, else
//! `~/.kube/config`, else the pod's service account), its namespace, and
//! the errors that say what to do: no cluster reachable, the CRD not
//! installed.

use kube::api::ListParams;
use kube::{Api, Client, Config};
use nur_operator::crd::NurFunction;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no cluster configured ({0}): set KUBECONFIG to a kubeconfig, or write ~/.kube/config")]
    NoConfig(String),
    #[error(
        "cannot reach the cluster at {url}: {cause}; check that it is running and that KUBECONFIG (or ~/.kube/config) points at it"
    )]
    Unreachable { url: String, cause: String },
    #[error(
        "the cluster at {url} has no NurFunction resource (the CRD nurfunctions.nur.dev is not installed): install Nur with `helm install nur charts/nur`"
    )]
    NoCrd { url: String },
    #[error(
        "the cluster at {url} does not allow it: {message}; ask its administrator for a Role that grants it, or use a namespace where you have one"
    )]
    Forbidden { url: String, message: String },
    #[error("the cluster at {url} refused: {message}")]
    Refused { url: String, message: String },
}

/// A client and the namespace the commands work in.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub namespace: String,
    /// The API server's URL, for messages.
    pub url: String,
}

impl Cluster {
    /// Connects with the kubeconfig; the namespace is `namespace` (the
    /// `-n` flag), else `nurfile` (its `namespace:`), else the
    /// kubeconfig's. Lists NurFunctions once, so that an unreachable
    /// cluster or a missing CRD is said here and not in a later step.
    pub async fn connect(
        namespace: Option<&str>,
        nurfile: Option<&str>,
    ) -> Result<Cluster, ClusterError> {
        let cluster = Cluster::infer(namespace.or(nurfile)).await?;
        cluster
            .functions()
            .list(&ListParams::default().limit(1))
            .await
            .map_err(|e| cluster.error(e))?;
        Ok(cluster)
    }

    /// A client from the kubeconfig, in `namespace` (else the
    /// kubeconfig's), without asking the cluster anything yet.
    pub async fn infer(namespace: Option<&str>) -> Result<Cluster, ClusterError> {
        install_crypto_provider();
        let config = Config::infer()
            .await
            .map_err(|e| ClusterError::NoConfig(e.to_string()))?;
        let url = config.cluster_url.to_string();
        let namespace = namespace
            .map(str::to_string)
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(|e| ClusterError::Unreachable {
            url: url.clone(),
            cause: e.to_string(),
        })?;
        Ok(Cluster {
            client,
            namespace,
            url,
        })
    }

    /// The same cluster, in namespace `namespace`.
    pub fn in_namespace(&self, namespace: &str) -> Cluster {
        Cluster {
            namespace: namespace.to_string(),
            ..self.clone()
        }
    }

    /// The NurFunctions of the namespace.
    pub fn functions(&self) -> Api<NurFunction> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Objects of kind `K` in the namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// A client error as the user should read it.
    pub fn error(&self, error: kube::Error) -> ClusterError {
        let url = self.url.clone();
        match error {
            // An unknown resource type (an object that is not there says
            // `nurfunctions.nur.dev "NAME" not found`).
            kube::Error::Api(s)
                if s.code == 404
                    && (s.message.contains("page not found")
                        || s.message.contains("could not find the requested resource")) =>
            {
                ClusterError::NoCrd { url }
            }
            kube::Error::Api(s) if s.code == 403 => ClusterError::Forbidden {
                url,
                message: s.message,
            },
            kube::Error::Api(s) => ClusterError::Refused {
                url,
                message: s.message,
            },
            other => ClusterError::Unreachable {
                url,
                cause: chain(&other),
            },
        }
    }
}

/// `error` and its sources, joined by ": ".
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

/// rustls needs one process-wide crypto provider; kube's is aws-lc-rs.
fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
