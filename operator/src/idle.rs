//! Scale to zero (pure): whether a function with spec.scaleToZero sleeps,
//! from its last activity: the last connection nur-gateway saw
//! (annotation `nur.dev/last-activity`), the last wake the gateway asked
//! for (`nur.dev/wake`), when it last became Ready or its compile Job
//! ended (so a function whose first pods took long, a compile or an image
//! pull, still serves for idleAfter), or its creation; and when to look
//! again.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::crd::NurFunction;

/// RFC 3339 time of the last connection through a gateway (written by
/// nur-gateway, at most every few seconds per function).
pub const LAST_ACTIVITY: &str = "nur.dev/last-activity";
/// RFC 3339 time a gateway asked a function at zero to wake (a change of
/// it triggers a reconcile at once).
pub const WAKE: &str = "nur.dev/wake";

/// Whether the function runs pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sleep {
    /// Awake; with scale to zero, asleep unless active within `check_in`.
    Awake { check_in: Option<Duration> },
    /// Idle for `idle`: zero pods.
    Asleep { idle: Duration },
}

/// The function's sleep at `now`; an error names a bad idleAfter.
pub fn decide(f: &NurFunction, now: Timestamp) -> Result<Sleep, String> {
    let Some(stz) = &f.spec.scale_to_zero else {
        return Ok(Sleep::Awake { check_in: None });
    };
    let idle = humantime::parse_duration(&stz.idle_after)
        .map_err(|e| format!("spec.scaleToZero.idleAfter {:?}: {e}", stz.idle_after))?;
    let annotation = |key: &str| {
        f.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .and_then(|v| v.parse::<Timestamp>().ok())
    };
    let condition = |type_: &str| {
        f.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
    };
    let serving_since = condition("Ready")
        .filter(|c| c.status == "True" && c.reason == "Ready")
        .map(|c| c.last_transition_time.0);
    // The compile Job's end: the first pods start only then.
    let compiled_at = condition("NativeCode")
        .filter(|c| c.status != "Unknown")
        .map(|c| c.last_transition_time.0);
    let activity = [
        annotation(LAST_ACTIVITY),
        annotation(WAKE),
        serving_since,
        compiled_at,
        f.metadata.creation_timestamp.as_ref().map(|t| t.0),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(now);
    let since = now.duration_since(activity);
    let since = Duration::try_from(since).unwrap_or_default();
    if since >= idle {
        Ok(Sleep::Asleep { idle: since })
    } else {
        Ok(Sleep::Awake {
            check_in: Some(idle - since),
        })
    }
}

/// A hash of what must trigger a reconcile: the generation (a spec
/// change) and a wake request, not the activity marks in between.
pub fn trigger(f: &NurFunction) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    f.metadata.generation.hash(&mut h);
    f.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(WAKE))
        .hash(&mut h);
    Some(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(annotations: &str) -> NurFunction {
        serde_yaml::from_str(&format!(
            "apiVersion: nur.dev/v1alpha1\nkind: NurFunction\n\
             metadata: {{name: f, creationTimestamp: '2026-01-01T00:00:00Z', annotations: {annotations}}}\n\
             spec: {{module: {{url: s3://b/k}}, scaleToZero: {{idleAfter: 5m}}}}"
        ))
        .unwrap()
    }

    fn at(t: &str) -> Timestamp {
        t.parse().unwrap()
    }

    #[test]
    fn idle_functions_sleep_and_activity_wakes_them() {
        let f = function("{}");
        assert_eq!(
            decide(&f, at("2026-01-01T00:04:00Z")),
            Ok(Sleep::Awake {
                check_in: Some(Duration::from_secs(60))
            })
        );
        assert_eq!(
            decide(&f, at("2026-01-01T00:05:00Z")),
            Ok(Sleep::Asleep {
                idle: Duration::from_secs(300)
            })
        );
        let used = function("{nur.dev/last-activity: '2026-01-01T01:00:00Z'}");
        assert!(matches!(
            decide(&used, at("2026-01-01T01:01:00Z")),
            Ok(Sleep::Awake { .. })
        ));
        let woken = function(
            "{nur.dev/last-activity: '2026-01-01T01:00:00Z', nur.dev/wake: '2026-01-01T02:00:00Z'}",
        );
        assert!(matches!(
            decide(&woken, at("2026-01-01T02:00:01Z")),
            Ok(Sleep::Awake { .. })
        ));
        // Ready only at 00:04 (a long first rollout): idleAfter from then.
        let mut slow: NurFunction = function("{}");
        slow.status = serde_yaml::from_str(
            "conditions: [{type: Ready, status: 'True', reason: Ready, message: '', \
             lastTransitionTime: '2026-01-01T00:04:00Z'}]",
        )
        .unwrap();
        assert_eq!(
            decide(&slow, at("2026-01-01T00:05:00Z")),
            Ok(Sleep::Awake {
                check_in: Some(Duration::from_secs(240))
            })
        );
        // Compiled at 00:04:30, never Ready yet: idleAfter from then.
        slow.status = serde_yaml::from_str(
            "conditions: [{type: NativeCode, status: 'True', reason: Compiled, message: '', \
             lastTransitionTime: '2026-01-01T00:04:30Z'}]",
        )
        .unwrap();
        assert_eq!(
            decide(&slow, at("2026-01-01T00:05:00Z")),
            Ok(Sleep::Awake {
                check_in: Some(Duration::from_secs(270))
            })
        );
        // Without scaleToZero: always awake, nothing to look at.
        let mut plain = function("{}");
        plain.spec.scale_to_zero = None;
        assert_eq!(
            decide(&plain, at("2030-01-01T00:00:00Z")),
            Ok(Sleep::Awake { check_in: None })
        );
    }

    #[test]
    fn only_a_wake_request_or_a_spec_change_triggers() {
        let a = function("{nur.dev/last-activity: '2026-01-01T01:00:00Z'}");
        let b = function("{nur.dev/last-activity: '2026-01-01T02:00:00Z'}");
        let c = function("{nur.dev/wake: '2026-01-01T02:00:00Z'}");
        assert_eq!(trigger(&a), trigger(&b));
        assert_ne!(trigger(&a), trigger(&c));
    }
}
