//! Status conditions: `Ready`, `Progressing`, `Degraded`, with `observedGeneration` and a
//! `lastTransitionTime` that moves only when the status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Sets a condition. The transition time is kept unless the status changes, so that
/// recomputing the same status produces the same object (and no write).
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: jiff::Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let message: String = message.chars().take(32 * 1024).collect();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Time(now);
            }
            c.status = status;
            c.reason = reason.to_string();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time: Time(now),
        }),
    }
}

/// The condition of a type, if set.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether a condition of that type is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transition_time_moves_only_on_a_flip() {
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: jiff::Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let mut c = Vec::new();
        set(&mut c, "Ready", true, "Reachable", "ok", Some(1), t0);
        set(&mut c, "Ready", true, "Reachable", "still ok", Some(2), t1);
        assert_eq!((c[0].last_transition_time.0, c[0].observed_generation), (t0, Some(2)));
        set(&mut c, "Ready", false, "LocationUnreachable", "down", Some(2), t1);
        assert_eq!(c[0].last_transition_time.0, t1);
        assert!(!is_true(&c, "Ready"));
    }
}
