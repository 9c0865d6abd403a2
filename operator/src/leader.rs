//! Leader election on a `coordination.k8s.io/v1` Lease, so that only one of
//! several operator replicas reconciles.
//!
//! A candidate takes the Lease when it is free, its own, or expired (not
//! renewed for `leaseDurationSeconds`), with the Lease's resourceVersion as
//! the guard against two candidates writing at once. The leader renews every
//! third of the duration; when it cannot renew before the Lease expires it
//! has lost leadership, and the process exits so that nothing reconciles
//! without the Lease.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};

/// Where the Lease is and who competes for it.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This candidate's identity (the pod name, or host and pid).
    pub identity: String,
    pub duration: Duration,
}

/// Why leadership failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("lease {0}: {1}")]
    Api(String, #[source] kube::Error),
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
        let mut logged = None;
        loop {
            match self.try_acquire().await? {
                Attempt::Acquired => {
                    tracing::info!(lease = %self.key(), identity = %self.config.identity, "became leader");
                    return Ok(());
                }
                Attempt::HeldBy(holder) => {
                    if logged.as_ref() != Some(&holder) {
                        tracing::info!(lease = %self.key(), %holder, "waiting for the lease");
                        logged = Some(holder);
                    }
                }
            }
            tokio::time::sleep(self.config.duration / 3).await;
        }
    }

    /// Renews the Lease until it cannot; returns the reason leadership ended.
    pub async fn hold(&self) -> Error {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.config.duration / 3).await;
            match self.try_acquire().await {
                Ok(Attempt::Acquired) => last_renewed = tokio::time::Instant::now(),
                Ok(Attempt::HeldBy(holder)) => {
                    tracing::warn!(lease = %self.key(), %holder, "lease taken over");
                    return Error::Lost(self.key(), last_renewed.elapsed());
                }
                Err(e) => tracing::warn!("renewing: {e}"),
            }
            if last_renewed.elapsed() >= self.config.duration {
                return Error::Lost(self.key(), last_renewed.elapsed());
            }
        }
    }

    /// Gives the Lease up (on shutdown), so a standby need not wait for it
    /// to expire.
    pub async fn release(&self) -> Result<(), Error> {
        let api_err = |e| Error::Api(self.key(), e);
        let Some(mut lease) = self.api.get_opt(&self.config.name).await.map_err(api_err)? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
            .map_err(api_err)?;
        tracing::info!(lease = %self.key(), "released the lease");
        Ok(())
    }

    async fn try_acquire(&self) -> Result<Attempt, Error> {
        let api_err = |e| Error::Api(self.key(), e);
        let now = Timestamp::now();
        let me = &self.config.identity;
        let duration_s = self.config.duration.as_secs().max(1) as i32;
        let existing = self.api.get_opt(&self.config.name).await.map_err(api_err)?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me.clone()),
                    lease_duration_seconds: Some(duration_s),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Acquired),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::HeldBy("?".into())),
                Err(e) => Err(api_err(e)),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let expired = match &spec.renew_time {
            Some(t) => {
                let d = i64::from(spec.lease_duration_seconds.unwrap_or(duration_s));
                now.as_millisecond() > t.0.as_millisecond() + d * 1000
            }
            None => true,
        };
        if !holder.is_empty() && holder != *me && !expired {
            return Ok(Attempt::HeldBy(holder));
        }
        if holder != *me {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(me.clone());
        spec.lease_duration_seconds = Some(duration_s);
        spec.renew_time = Some(MicroTime(now));
        // replace() sends the resourceVersion read above: a concurrent
        // writer makes this a 409 instead of two leaders.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Acquired),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::HeldBy(holder)),
            Err(e) => Err(api_err(e)),
        }
    }
}
