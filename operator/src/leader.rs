//! Leader election on a `coordination.k8s.io/v1` Lease, so that only one of
//! several operator replicas reconciles, as client-go's leaderelection does
//! it:
//!
//! - A candidate never compares the Lease's renewTime with its own clock
//!   (clocks of two hosts differ). It notes, on its own monotonic clock,
//!   when it last saw the Lease's record change; the Lease has expired when
//!   the record has not changed for the Lease's own leaseDurationSeconds.
//! - The leader renews every [`LeaseConfig::retry`], each request bounded
//!   in time, and steps down (the process exits) when it has not renewed
//!   within [`LeaseConfig::renew_deadline`], two thirds of the duration:
//!   before any standby, which waits the whole duration after the last
//!   change it saw, may take the Lease.
//! - Every write carries the resourceVersion read: two candidates writing
//!   at once make one of them a 409.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::time::Instant;

/// Where the Lease is and who competes for it.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This candidate's identity (the pod name, or host and pid).
    pub identity: String,
    /// How long a Lease stays held without renewal.
    pub duration: Duration,
}

impl LeaseConfig {
    /// How long the leader may go without a renewal before it steps down.
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// Time between two attempts to take or renew the Lease.
    pub fn retry(&self) -> Duration {
        self.duration / 5
    }
}

/// Why leadership failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("lease {0}: {1}")]
    Api(String, #[source] kube::Error),
    #[error("lease {0}: no answer from the API server within {1:?}")]
    Timeout(String, Duration),
    #[error("lease {0}: not renewed for {1:?}; leadership lost")]
    Lost(String, Duration),
}

/// A Lease candidate.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
}

enum Attempt {
    Acquired,
    HeldBy(String),
}

/// The Lease record as last seen, and when it was first seen so.
#[derive(Default)]
struct Observed {
    record: Option<(String, Option<String>)>,
    since: Option<Instant>,
}

impl Observed {
    /// Notes `lease`'s record; returns how long it has been unchanged.
    fn note(&mut self, lease: &Lease) -> Duration {
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default();
        let record = Some((holder, lease.metadata.resource_version.clone()));
        if record != self.record || self.since.is_none() {
            self.record = record;
            self.since = Some(Instant::now());
        }
        self.since.map_or(Duration::ZERO, |s| s.elapsed())
    }
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    fn key(&self) -> String {
        format!("{}/{}", self.config.namespace, self.config.name)
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&self) -> Result<(), Error> {
        let mut observed = Observed::default();
        let mut logged = None;
        loop {
            match self.try_acquire(&mut observed).await {
                Ok(Attempt::Acquired) => {
                    tracing::info!(lease = %self.key(), identity = %self.config.identity, "became leader");
                    return Ok(());
                }
                Ok(Attempt::HeldBy(holder)) => {
                    if logged.as_ref() != Some(&holder) {
                        tracing::info!(lease = %self.key(), %holder, "waiting for the lease");
                        logged = Some(holder);
                    }
                }
                Err(e) => tracing::warn!("acquiring: {e}"),
            }
            tokio::time::sleep(self.config.retry()).await;
        }
    }

    /// Renews the Lease until it cannot; returns the reason leadership ended.
    pub async fn hold(&self) -> Error {
        let mut observed = Observed::default();
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry()).await;
            let sent = Instant::now();
            let deadline = renewed + self.config.renew_deadline();
            match tokio::time::timeout_at(deadline, self.try_acquire(&mut observed)).await {
                // Counted from when the request was sent: the API server may
                // have written the renewal at any time after.
                Ok(Ok(Attempt::Acquired)) => renewed = sent,
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    tracing::warn!(lease = %self.key(), %holder, "lease taken over");
                    return Error::Lost(self.key(), renewed.elapsed());
                }
                Ok(Err(e)) => tracing::warn!("renewing: {e}"),
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                return Error::Lost(self.key(), renewed.elapsed());
            }
        }
    }

    /// Gives the Lease up (on shutdown), so a standby need not wait for it
    /// to expire.
    pub async fn release(&self) -> Result<(), Error> {
        let Some(mut lease) = self.bounded(self.api.get_opt(&self.config.name)).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        self.bounded(
            self.api
                .replace(&self.config.name, &PostParams::default(), &lease),
        )
        .await?;
        tracing::info!(lease = %self.key(), "released the lease");
        Ok(())
    }

    /// One API request, bounded by the renew deadline.
    async fn bounded<T>(
        &self,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, Error> {
        let bound = self.config.renew_deadline();
        match tokio::time::timeout(bound, request).await {
            Ok(result) => result.map_err(|e| Error::Api(self.key(), e)),
            Err(_) => Err(Error::Timeout(self.key(), bound)),
        }
    }

    async fn try_acquire(&self, observed: &mut Observed) -> Result<Attempt, Error> {
        let now = MicroTime(Timestamp::now());
        let me = &self.config.identity;
        let duration_s = self.config.duration.as_secs().max(1) as i32;
        let existing = self.bounded(self.api.get_opt(&self.config.name)).await?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me.clone()),
                    lease_duration_seconds: Some(duration_s),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self
                .bounded(self.api.create(&PostParams::default(), &lease))
                .await
            {
                Ok(_) => Ok(Attempt::Acquired),
                Err(Error::Api(_, kube::Error::Api(s))) if s.code == 409 => {
                    Ok(Attempt::HeldBy("?".into()))
                }
                Err(e) => Err(e),
            };
        };
        let unchanged = observed.note(&lease);
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let their_duration =
            Duration::from_secs(spec.lease_duration_seconds.unwrap_or(duration_s).max(1) as u64);
        if !holder.is_empty() && holder != *me && unchanged < their_duration {
            return Ok(Attempt::HeldBy(holder));
        }
        if holder != *me {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(me.clone());
        spec.lease_duration_seconds = Some(duration_s);
        spec.renew_time = Some(now);
        // replace() sends the resourceVersion read above: a concurrent
        // writer makes this a 409 instead of two leaders.
        match self
            .bounded(
                self.api
                    .replace(&self.config.name, &PostParams::default(), &lease),
            )
            .await
        {
            Ok(_) => Ok(Attempt::Acquired),
            Err(Error::Api(_, kube::Error::Api(s))) if s.code == 409 => Ok(Attempt::HeldBy(holder)),
            Err(e) => Err(e),
        }
    }
}
