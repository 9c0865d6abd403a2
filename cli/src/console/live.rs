//! Server-sent events: the function list as it changes (a watch of
//! NurFunctions, the whole list sent again on each change) and a
//! function's log lines from every pod as they come.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, KeepAliveStream, Sse};
use futures::stream::{self, BoxStream, StreamExt};
use kube::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use nur_operator::crd::NurFunction;
use serde::{Deserialize, Serialize};

use super::App;
use super::api::summary;
use super::error::{ConsoleError, Problem};
use crate::logs::{self, LogLine};

type Events = Sse<KeepAliveStream<BoxStream<'static, Result<Event, Infallible>>>>;

/// Log lines of the last minutes a log view starts with.
const LOG_HISTORY: Duration = Duration::from_secs(600);

#[derive(Deserialize)]
pub struct Namespace {
    /// A namespace, `*` for every namespace, or empty for the default.
    #[serde(default)]
    pub namespace: String,
}

fn event(name: &str, data: &impl Serialize) -> Result<Event, Infallible> {
    Ok(Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event(name)))
}

fn sse(events: BoxStream<'static, Result<Event, Infallible>>) -> Events {
    Sse::new(events).keep_alive(KeepAlive::default())
}

fn problem_only(e: ConsoleError) -> Events {
    sse(stream::once(async move { event("problem", &e.problem()) }).boxed())
}

/// `functions` events with every function of the namespace (sorted by
/// namespace and name) when the list changes; `problem` events when the
/// watch fails (it retries with backoff).
pub async fn functions(State(app): State<App>, Query(q): Query<Namespace>) -> Events {
    let all = q.namespace == "*";
    let cluster = match app.cluster(if all { "" } else { &q.namespace }) {
        Ok(c) => c,
        Err(e) => return problem_only(e),
    };
    let api: Api<NurFunction> = if all {
        Api::all(cluster.client.clone())
    } else {
        cluster.functions()
    };
    let (reader, writer) = reflector::store();
    let watch = reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    let events = watch
        .filter_map(move |e| {
            let (reader, cluster) = (reader.clone(), cluster.clone());
            async move {
                match e {
                    Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => None,
                    Ok(_) => {
                        let mut list: Vec<_> = reader.state().iter().map(|f| summary(f)).collect();
                        list.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
                        Some(event("functions", &list))
                    }
                    Err(e) => Some(event("problem", &watch_problem(&cluster, e))),
                }
            }
        })
        .boxed();
    sse(events)
}

fn watch_problem(cluster: &crate::cluster::Cluster, e: watcher::Error) -> Problem {
    match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => ConsoleError::from(cluster.error(e)).problem(),
        other => Problem {
            kind: "refused",
            message: other.to_string(),
        },
    }
}

/// A log line as the page shows it.
#[derive(Serialize)]
pub struct Line {
    pub time: String,
    pub pod: String,
    /// The connection a line of the function was logged on.
    pub connection: Option<u64>,
    /// The function's message, or the worker's whole line.
    pub message: String,
}

impl From<&LogLine> for Line {
    fn from(l: &LogLine) -> Self {
        let (connection, message) = match l.function() {
            Some((c, m)) => (Some(c), m.to_string()),
            None => (None, l.text.trim_start().to_string()),
        };
        Line {
            time: l.time.clone(),
            pod: l.pod.clone(),
            connection,
            message,
        }
    }
}

/// `reset`, then a `line` event per log line of every pod of the function
/// (the last ten minutes first), until the pods' streams end (the page
/// then connects again and gets the pods of that moment).
pub async fn logs(
    State(app): State<App>,
    Path((namespace, name)): Path<(String, String)>,
) -> Events {
    let cluster = match app.cluster(&namespace) {
        Ok(c) => c,
        Err(e) => return problem_only(e),
    };
    let lines = match logs::stream(&cluster, &name, Some(LOG_HISTORY.as_secs() as i64)).await {
        Ok(s) => s,
        Err(e) => return problem_only(e.into()),
    };
    let reset = stream::once(async { event("reset", &()) });
    let lines = lines.filter_map(|l| async move { l.ok().map(|l| event("line", &Line::from(&l))) });
    sse(reset.chain(lines).boxed())
}
