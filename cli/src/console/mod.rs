//! `nur console`: the web console, a local server that talks to the
//! cluster with the user's own kubeconfig (so it can do exactly what the
//! user may do) and serves a page embedded in the binary.
//!
//! Layout:
//! - this file: the console's state ([`App`]), the router, the listener
//!   and its shutdown;
//! - [`guard`]: only the console's own page may use it (Host checked
//!   against DNS rebinding, a header on every write against other sites'
//!   forms), and the page's security headers;
//! - [`api`]: JSON of the functions, of one function, scale and delete;
//! - [`live`]: server-sent events: the function list as it changes (a
//!   watch), a function's log lines from every pod;
//! - [`metrics`]: the worker pods' `/metrics` through the API server's pod
//!   proxy, summed over the pods;
//! - [`tryit`]: a call of the function and the log lines it produced;
//! - [`error`]: what went wrong, as the page shows it;
//! - [`assets`]: the page, its script and style (plain files in
//!   `assets/`, no build step).

pub mod api;
pub mod assets;
pub mod error;
pub mod guard;
pub mod live;
pub mod metrics;
pub mod tryit;

use std::net::SocketAddr;

use axum::Router;
use axum::routing::{get, post};

use crate::cluster::Cluster;
use error::ConsoleError;

/// What every handler shares: the cluster (or why there is none) and the
/// gateway `nur call --gateway` would use.
#[derive(Clone)]
pub struct App {
    cluster: Result<Cluster, String>,
    /// nur-gateway's HTTP address (HOST:PORT), for functions with routes.
    pub gateway: Option<String>,
}

impl App {
    /// The kubeconfig's cluster in `namespace` (else the kubeconfig's). A
    /// missing kubeconfig is kept to be shown on the page, not fatal.
    pub async fn connect(namespace: Option<&str>, gateway: Option<String>) -> App {
        let cluster = Cluster::infer(namespace).await.map_err(|e| e.to_string());
        App { cluster, gateway }
    }

    /// The cluster in `namespace` (the default one when empty).
    pub fn cluster(&self, namespace: &str) -> Result<Cluster, ConsoleError> {
        let cluster = self
            .cluster
            .as_ref()
            .map_err(|e| ConsoleError::NoCluster(e.clone()))?;
        Ok(if namespace.is_empty() {
            cluster.clone()
        } else {
            cluster.in_namespace(namespace)
        })
    }

    /// The default namespace and the API server's URL, when connected.
    pub fn context(&self) -> Option<(&str, &str)> {
        self.cluster
            .as_ref()
            .ok()
            .map(|c| (c.namespace.as_str(), c.url.as_str()))
    }
}

/// Every route of the console.
pub fn router(app: App, listen: SocketAddr) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/app.js", get(assets::script))
        .route("/app.css", get(assets::style))
        .route("/api/context", get(api::context))
        .route("/api/watch/functions", get(live::functions))
        .route(
            "/api/functions/{namespace}/{name}",
            get(api::detail).delete(api::delete),
        )
        .route("/api/functions/{namespace}/{name}/scale", post(api::scale))
        .route("/api/functions/{namespace}/{name}/logs", get(live::logs))
        .route(
            "/api/functions/{namespace}/{name}/metrics",
            get(metrics::sample),
        )
        .route("/api/functions/{namespace}/{name}/call", post(tryit::call))
        .layer(axum::middleware::from_fn_with_state(
            guard::Guard::new(listen),
            guard::check,
        ))
        .with_state(app)
}

/// Serves the console on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listen = listener.local_addr()?;
    axum::serve(listener, router(app, listen))
        .with_graceful_shutdown(shutdown)
        .await
}
