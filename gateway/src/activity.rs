//! What scale to zero needs from the gateway: marks of activity on each
//! function that scales to zero (annotation `nur.dev/last-activity`, every
//! few seconds while it has connections, so that the operator does not
//! take it to zero under a client), and a wake request
//! (`nur.dev/wake`) when a connection comes for a function without a
//! ready pod. Both are merge patches of the NurFunction's annotations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use nur_operator::crd::NurFunction;
use nur_operator::idle::{LAST_ACTIVITY, WAKE};
use nur_operator::routes::Target;

/// The fewest seconds between two wake requests for one function.
const WAKE_EVERY: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Marks {
    /// Connections open now, and whether one started since the last flush.
    open: HashMap<Target, (usize, bool)>,
    woken: HashMap<Target, Instant>,
}

/// Activity marks and wake requests of this gateway replica.
pub struct Activity {
    client: Option<Client>,
    marks: Mutex<Marks>,
}

/// An open connection to a function that scales to zero.
pub struct Open {
    activity: Arc<Activity>,
    target: Target,
}

impl Drop for Open {
    fn drop(&mut self) {
        let mut marks = self.activity.marks.lock().unwrap();
        if let Some((n, _)) = marks.open.get_mut(&self.target) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Activity {
    /// Marks through `client`; none without one (tests of the proxy).
    pub fn new(client: Option<Client>) -> Arc<Activity> {
        Arc::new(Activity {
            client,
            marks: Mutex::default(),
        })
    }

    /// Counts a connection to `target` until the guard drops (nothing for
    /// a function that does not scale to zero).
    pub fn open(self: &Arc<Self>, target: &Target) -> Option<Open> {
        if !target.wakes {
            return None;
        }
        let mut marks = self.marks.lock().unwrap();
        let entry = marks.open.entry(target.clone()).or_default();
        entry.0 += 1;
        entry.1 = true;
        Some(Open {
            activity: self.clone(),
            target: target.clone(),
        })
    }

    /// Asks for `target` to be woken (at most every [`WAKE_EVERY`]).
    pub async fn wake(&self, target: &Target) {
        {
            let mut marks = self.marks.lock().unwrap();
            let now = Instant::now();
            if marks
                .woken
                .get(target)
                .is_some_and(|t| now.duration_since(*t) < WAKE_EVERY)
            {
                return;
            }
            marks.woken.insert(target.clone(), now);
        }
        tracing::info!(function = %target, "waking");
        self.annotate(target, WAKE).await;
    }

    /// Writes the activity marks of functions with connections, every
    /// `every`, until the process ends.
    pub async fn flush_every(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let active: Vec<Target> = {
                let mut marks = self.marks.lock().unwrap();
                marks.open.retain(|_, (n, started)| *n > 0 || *started);
                marks
                    .open
                    .iter_mut()
                    .map(|(t, (_, started))| {
                        *started = false;
                        t.clone()
                    })
                    .collect()
            };
            for target in active {
                self.annotate(&target, LAST_ACTIVITY).await;
            }
        }
    }

    async fn annotate(&self, target: &Target, key: &str) {
        let Some(client) = &self.client else { return };
        let api: Api<NurFunction> = Api::namespaced(client.clone(), &target.namespace);
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let patch = serde_json::json!({"metadata": {"annotations": {key: now}}});
        if let Err(e) = api
            .patch(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(function = %target, "writing {key}: {e}");
        }
    }
}
