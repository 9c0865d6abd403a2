//! What went wrong, as the console's page shows it: a kind the page can
//! act on and the message of the CLI's own errors (they say what to do).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::call::CallError;
use crate::cluster::ClusterError;
use crate::status::StatusError;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{0}")]
    NoCluster(String),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("{0}")]
    BadRequest(String),
}

/// An error as JSON: `{"kind": ..., "message": ...}`.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// no_cluster, unreachable, no_crd, forbidden, not_found, refused,
    /// no_ready_pod, call_failed or bad_request.
    pub kind: &'static str,
    pub message: String,
}

impl ConsoleError {
    pub fn problem(&self) -> Problem {
        Problem {
            kind: self.kind(),
            message: self.to_string(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ConsoleError::NoCluster(_) => "no_cluster",
            ConsoleError::Cluster(c)
            | ConsoleError::Status(StatusError::Cluster(c))
            | ConsoleError::Call(CallError::Status(StatusError::Cluster(c))) => cluster_kind(c),
            ConsoleError::Status(StatusError::NotFound { .. })
            | ConsoleError::Call(CallError::Status(StatusError::NotFound { .. })) => "not_found",
            ConsoleError::Call(CallError::NoReadyPod { .. }) => "no_ready_pod",
            ConsoleError::Call(CallError::BadRequestLine(_) | CallError::BadHeader(_))
            | ConsoleError::BadRequest(_) => "bad_request",
            ConsoleError::Call(_) => "call_failed",
        }
    }

    fn status(&self) -> StatusCode {
        match self.kind() {
            "forbidden" => StatusCode::FORBIDDEN,
            "not_found" => StatusCode::NOT_FOUND,
            "bad_request" => StatusCode::BAD_REQUEST,
            "no_ready_pod" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

fn cluster_kind(c: &ClusterError) -> &'static str {
    match c {
        ClusterError::NoConfig(_) => "no_cluster",
        ClusterError::Unreachable { .. } => "unreachable",
        ClusterError::NoCrd { .. } => "no_crd",
        ClusterError::Forbidden { .. } => "forbidden",
        ClusterError::Refused { .. } => "refused",
    }
}

impl From<kube::Error> for Problem {
    fn from(e: kube::Error) -> Self {
        Problem {
            kind: "refused",
            message: crate::cluster::chain(&e),
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        (self.status(), Json(self.problem())).into_response()
    }
}
