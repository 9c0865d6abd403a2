//! `nur logs NAME`: the log lines of every worker pod of a function,
//! merged in time (the kubelet's timestamps), each with its pod; a line
//! the function logged (`nur_log`) shows the connection it was logged on.
//! With `--follow`, lines of the pods running when it starts, as they come.

use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;

use crate::cluster::{Cluster, ClusterError};
use crate::status::{self, StatusError};

/// One log line of a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// The kubelet's timestamp (RFC 3339, trailing zeros cut: it is
    /// parsed to sort).
    pub time: String,
    pub at: Option<jiff::Timestamp>,
    pub pod: String,
    pub text: String,
}

impl LogLine {
    /// A line as the kubelet gives it with timestamps: `TIME TEXT`.
    pub fn parse(pod: &str, raw: &str) -> LogLine {
        let (time, text) = raw.split_once(' ').unwrap_or(("", raw));
        LogLine {
            time: time.to_string(),
            at: time.parse().ok(),
            pod: pod.to_string(),
            text: text.to_string(),
        }
    }

    /// The connection and message of a line the function logged.
    pub fn function(&self) -> Option<(u64, &str)> {
        function_line(&self.text)
    }

    /// `TIME POD [conn N] MESSAGE` for a line of the function, else
    /// `TIME POD TEXT` (the worker's own line as it wrote it).
    pub fn render(&self) -> String {
        let text = match function_line(&self.text) {
            Some((connection, message)) => format!("[conn {connection}] {message}"),
            None => self.text.trim_start().to_string(),
        };
        format!("{} {} {text}", self.time, self.pod)
    }
}

/// The connection and message of a `nur_log` line in the worker's text
/// format (`TIME  INFO nur::function: MESSAGE function=F connection=N`).
fn function_line(text: &str) -> Option<(u64, &str)> {
    let (_, rest) = text.split_once(" nur::function: ")?;
    let (rest, connection) = rest.rsplit_once(" connection=")?;
    let connection = connection.trim().parse().ok()?;
    let message = rest.rsplit_once(" function=").map_or(rest, |(m, _)| m);
    Some((connection, message))
}

/// The log of every pod of `name` since `since_seconds` ago (all when
/// `None`), merged in time.
pub async fn logs(
    cluster: &Cluster,
    name: &str,
    since_seconds: Option<i64>,
) -> Result<Vec<LogLine>, StatusError> {
    let pods = function_pods(cluster, name).await?;
    let api = cluster.api::<Pod>();
    let mut lines = Vec::new();
    for pod in &pods {
        let params = params(since_seconds, false);
        let text = match api.logs(pod, &params).await {
            Ok(t) => t,
            // A pod not started yet has no log.
            Err(kube::Error::Api(s)) if s.code == 400 => continue,
            Err(e) => return Err(cluster.error(e).into()),
        };
        lines.extend(text.lines().map(|l| LogLine::parse(pod, l)));
    }
    lines.sort_by_key(|l| l.at);
    Ok(lines)
}

/// Prints the lines of every pod of `name` as they come, until they end.
pub async fn follow(
    cluster: &Cluster,
    name: &str,
    since_seconds: Option<i64>,
) -> Result<(), StatusError> {
    let mut merged = stream(cluster, name, since_seconds).await?;
    while let Some(line) = merged.next().await {
        match line {
            Ok(l) => println!("{}", l.render()),
            Err(e) => eprintln!("a log stream ended: {e}"),
        }
    }
    Ok(())
}

/// The lines of every pod of `name` (those running now) as they come,
/// merged; it ends when every pod's stream has ended.
pub async fn stream(
    cluster: &Cluster,
    name: &str,
    since_seconds: Option<i64>,
) -> Result<futures::stream::BoxStream<'static, std::io::Result<LogLine>>, StatusError> {
    let pods = function_pods(cluster, name).await?;
    let api = cluster.api::<Pod>();
    let mut streams = Vec::new();
    for pod in pods {
        let reader = api
            .log_stream(&pod, &params(since_seconds, true))
            .await
            .map_err(|e| cluster.error(e))?;
        streams.push(
            reader
                .lines()
                .map_ok(move |l| LogLine::parse(&pod, &l))
                .boxed(),
        );
    }
    Ok(futures::stream::select_all(streams).boxed())
}

async fn function_pods(cluster: &Cluster, name: &str) -> Result<Vec<String>, StatusError> {
    status::get(cluster, name).await?;
    let pods: Vec<String> = status::pods(cluster, name)
        .await?
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    if pods.is_empty() {
        return Err(StatusError::Cluster(ClusterError::Refused {
            url: cluster.url.clone(),
            message: format!("function {name} has no pods: `nur status {name}` says why"),
        }));
    }
    Ok(pods)
}

fn params(since_seconds: Option<i64>, follow: bool) -> LogParams {
    LogParams {
        container: Some(nur_operator::deployment::CONTAINER.into()),
        timestamps: true,
        since_seconds,
        follow,
        ..LogParams::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_lines_show_their_connection() {
        let l = LogLine::parse(
            "cowsay-7d9-abc",
            "2026-12-02T01:02:03.123456789Z 2026-12-02T01:02:03.123Z  INFO nur::function: cowsay: 3 bytes function=cowsay connection=7",
        );
        assert_eq!(
            l.render(),
            "2026-12-02T01:02:03.123456789Z cowsay-7d9-abc [conn 7] cowsay: 3 bytes"
        );
        let worker = LogLine::parse(
            "p",
            "2026-12-02T01:02:03Z 2026-12-02T01:02:03Z  INFO nur_worker: ready",
        );
        assert_eq!(
            worker.render(),
            "2026-12-02T01:02:03Z p 2026-12-02T01:02:03Z  INFO nur_worker: ready"
        );
    }
}
