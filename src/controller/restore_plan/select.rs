//! Which restore point a plan restores, and from which location (pure). The plan's
//! locations are tried in its order: an unreachable one, or one that does not hold a
//! fitting point, is passed over and the reason kept, so the condition can say which
//! location was used and why the ones before it were not.

use crate::api::restore_plan::{PointInTime, PointSelector};

/// A complete restore point this cluster knows of, and where it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Known {
    pub name: String,
    /// When its data was taken.
    pub time: jiff::Timestamp,
    /// Its slot (`spec.scheduledTime`): of two taken in one second, the later slot is the
    /// newer, as the policy's `lastBackup` says.
    pub slot: jiff::Timestamp,
    /// Locations holding it complete.
    pub locations: Vec<String>,
}

/// The choice, and why earlier locations were passed over.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub point: String,
    pub time: jiff::Timestamp,
    pub location: String,
    /// `<location>: <reason>` for each location tried before.
    pub passed_over: Vec<String>,
}

impl Choice {
    /// One line for a condition message.
    pub fn describe(&self) -> String {
        let mut s = format!("restore point {} ({}) from BackupLocation {}", self.point, self.time, self.location);
        if !self.passed_over.is_empty() {
            s.push_str(&format!(", not {}", self.passed_over.join("; ")));
        }
        s
    }
}

/// Chooses by `pit` from the first location in `order` that is reachable and holds a
/// fitting point. `unreachable(location)` says why a location cannot be read, if it
/// cannot. An error says, per location, why nothing fits.
pub fn choose(
    pit: &PointInTime,
    order: &[String],
    unreachable: impl Fn(&str) -> Option<String>,
    known: &[Known],
) -> Result<Choice, String> {
    if order.is_empty() {
        return Err("spec.source.locations: no location to restore from".into());
    }
    let mut passed_over = Vec::new();
    for loc in order {
        if let Some(why) = unreachable(loc) {
            passed_over.push(format!("{loc}: unreachable ({why})"));
            continue;
        }
        let here = known.iter().filter(|k| k.locations.iter().any(|l| l == loc));
        let fitting = match pit.type_ {
            PointSelector::Latest => here.max_by_key(|k| (k.time, k.slot, k.name.clone())),
            PointSelector::Named => {
                let Some(want) = pit.restore_point.as_deref() else {
                    return Err("spec.pointInTime.restorePoint: required for type Named".into());
                };
                here.into_iter().find(|k| k.name == want)
            }
            PointSelector::Before => {
                let Some(before) = pit.before.as_ref().map(|t| t.0) else {
                    return Err("spec.pointInTime.before: required for type Before".into());
                };
                here.filter(|k| k.time <= before).max_by_key(|k| (k.time, k.slot, k.name.clone()))
            }
        };
        match fitting {
            Some(k) => {
                return Ok(Choice { point: k.name.clone(), time: k.time, location: loc.clone(), passed_over });
            }
            None => passed_over.push(format!("{loc}: {}", missing(pit))),
        }
    }
    Err(format!("no location can give {}: {}", wanted(pit), passed_over.join("; ")))
}

fn wanted(pit: &PointInTime) -> String {
    match pit.type_ {
        PointSelector::Latest => "a restore point".into(),
        PointSelector::Named => format!("restore point {}", pit.restore_point.as_deref().unwrap_or_default()),
        PointSelector::Before => {
            format!(
                "a restore point taken at or before {}",
                pit.before.as_ref().map(|t| t.0.to_string()).unwrap_or_default()
            )
        }
    }
}

fn missing(pit: &PointInTime) -> String {
    match pit.type_ {
        PointSelector::Latest => "holds no complete restore point".into(),
        _ => format!("holds no {}", wanted(pit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn t(h: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_790_000_000 + h * 3600).unwrap()
    }

    fn known() -> Vec<Known> {
        let k = |n: &str, h: i64, locs: &[&str]| Known {
            name: n.into(),
            time: t(h),
            slot: t(h),
            locations: locs.iter().map(|l| l.to_string()).collect(),
        };
        // The replica lags one point behind the primary.
        vec![k("p1", 1, &["eu", "us"]), k("p2", 2, &["eu", "us"]), k("p3", 3, &["eu"])]
    }

    fn order() -> Vec<String> {
        vec!["eu".into(), "us".into()]
    }

    fn pit(type_: PointSelector, name: Option<&str>, before: Option<i64>) -> PointInTime {
        PointInTime { type_, restore_point: name.map(String::from), before: before.map(|h| Time(t(h))) }
    }

    #[test]
    fn the_first_reachable_location_gives_the_point_and_the_others_say_why_not() {
        let all_up = |_: &str| None;
        let c = choose(&pit(PointSelector::Latest, None, None), &order(), all_up, &known()).unwrap();
        assert_eq!((c.point.as_str(), c.location.as_str()), ("p3", "eu"));
        assert!(c.passed_over.is_empty());

        // The primary region is down: the replica's newest, and the reason in the message.
        let eu_down = |l: &str| (l == "eu").then(|| "connection refused".to_string());
        let c = choose(&pit(PointSelector::Latest, None, None), &order(), eu_down, &known()).unwrap();
        assert_eq!((c.point.as_str(), c.location.as_str()), ("p2", "us"));
        assert_eq!(
            c.describe(),
            format!("restore point p2 ({}) from BackupLocation us, not eu: unreachable (connection refused)", t(2))
        );

        // A named point only the primary has, with the primary down: nothing, and why.
        let e = choose(&pit(PointSelector::Named, Some("p3"), None), &order(), eu_down, &known()).unwrap_err();
        assert_eq!(
            e,
            "no location can give restore point p3: eu: unreachable (connection refused); us: holds no restore point p3"
        );
    }

    #[test]
    fn before_takes_the_newest_point_at_or_before_the_time() {
        let up = |_: &str| None;
        let c = choose(&pit(PointSelector::Before, None, Some(2)), &order(), up, &known()).unwrap();
        assert_eq!(c.point, "p2", "at the time itself counts");
        let e = choose(&pit(PointSelector::Before, None, Some(0)), &order(), up, &known()).unwrap_err();
        assert!(e.starts_with("no location can give a restore point taken at or before"), "{e}");
        // A missing field of the selector is named.
        let e = choose(&pit(PointSelector::Named, None, None), &order(), up, &known()).unwrap_err();
        assert_eq!(e, "spec.pointInTime.restorePoint: required for type Named");
        assert!(choose(&pit(PointSelector::Latest, None, None), &[], up, &known()).is_err());
    }
}
