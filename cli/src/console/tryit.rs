//! Try it: a call of the function from the page, as `nur call` makes it
//! (through nur-gateway when the console knows one and the function has an
//! HTTP route, else a port-forward to a ready pod through the API server),
//! its answer (an HTTP answer parsed into status, headers and body), its
//! time, and the log lines the function wrote meanwhile.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use super::App;
use super::error::ConsoleError;
use super::live::Line;
use crate::call::{self, Input};
use crate::{logs, status};

/// Answer bytes shown at most.
const SHOWN_BYTES: usize = 64 * 1024;
/// How long to look for the call's log lines after the answer (the
/// kubelet writes them a moment later).
const LOG_WAIT: Duration = Duration::from_secs(4);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRequest {
    /// Raw bytes when absent; an HTTP request when set: `METHOD /path`.
    pub request_line: Option<String>,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The bytes, or the HTTP request's body.
    #[serde(default)]
    pub data: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallAnswer {
    /// `gateway HOST:PORT` or `port-forward`.
    pub via: String,
    pub millis: f64,
    pub size: usize,
    /// The answer as text (invalid UTF-8 replaced), its first 64 KiB.
    pub raw: String,
    pub http: Option<HttpAnswer>,
    pub logs: Vec<Line>,
}

#[derive(Serialize)]
pub struct HttpAnswer {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

pub async fn call(
    State(app): State<App>,
    Path((namespace, name)): Path<(String, String)>,
    Json(request): Json<CallRequest>,
) -> Result<Json<CallAnswer>, ConsoleError> {
    let cluster = app.cluster(&namespace)?;
    let f = status::get(&cluster, &name).await?;
    let body = request.data.into_bytes();
    let input = match request.request_line {
        Some(request_line) => Input::Http {
            request_line,
            headers: request.headers,
            body,
        },
        None => Input::Bytes(body),
    };
    let route = f.spec.routes.as_ref().and_then(|r| r.http.first());
    let timeout = Duration::from_secs(30);
    let started = jiff::Timestamp::now();
    let clock = Instant::now();
    let (via, answer) = match (&app.gateway, route) {
        (Some(gateway), Some(route)) => {
            let bytes = call::through_gateway(input, route)?;
            let answer = call::call_gateway(gateway, &bytes, timeout).await?;
            (format!("gateway {gateway}"), answer)
        }
        _ => {
            let bytes = call::encode(input, &name)?;
            (
                "port-forward".to_string(),
                call::call(&cluster, &name, &bytes, timeout).await?,
            )
        }
    };
    let millis = clock.elapsed().as_secs_f64() * 1000.0;
    let logs = call_logs(&cluster, &name, started).await;
    let shown = &answer[..answer.len().min(SHOWN_BYTES)];
    Ok(Json(CallAnswer {
        via,
        millis,
        size: answer.len(),
        raw: String::from_utf8_lossy(shown).into_owned(),
        http: parse_http(shown),
        logs,
    }))
}

/// The function's log lines since `started` (a second of clock skew
/// allowed), waited for a moment when there are none yet.
async fn call_logs(
    cluster: &crate::cluster::Cluster,
    name: &str,
    started: jiff::Timestamp,
) -> Vec<Line> {
    let from = started - jiff::SignedDuration::from_secs(1);
    let deadline = Instant::now() + LOG_WAIT;
    loop {
        let since = jiff::Timestamp::now().duration_since(from).as_secs().max(1) + 1;
        let lines: Vec<Line> = logs::logs(cluster, name, Some(since))
            .await
            .unwrap_or_default()
            .iter()
            .filter(|l| l.function().is_some() && l.at.is_some_and(|t| t >= from))
            .map(Line::from)
            .collect();
        if !lines.is_empty() || Instant::now() >= deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Status, headers and body of an HTTP/1.x answer.
fn parse_http(answer: &[u8]) -> Option<HttpAnswer> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = response.parse(answer).ok()? else {
        return None;
    };
    Some(HttpAnswer {
        status: response.code?,
        reason: response.reason.unwrap_or_default().to_string(),
        headers: response
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&answer[head..]).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_answers_are_split_and_bytes_left_alone() {
        let a = parse_http(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi").unwrap();
        assert_eq!(
            (a.status, a.reason.as_str(), a.body.as_str()),
            (200, "OK", "hi")
        );
        assert_eq!(a.headers, vec![("content-length".into(), "2".into())]);
        assert!(parse_http(b"moo").is_none());
    }
}
