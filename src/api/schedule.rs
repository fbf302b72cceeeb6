//! Cron schedules in a time zone: parsing (as Kubernetes CronJobs do: five fields or an
//! `@` macro), next run, and the longest gap between runs (which bounds the best
//! achievable RPO).

use croner::{Cron, parser::CronParser, parser::Seconds, parser::Year};
use jiff::{Span, Timestamp, Zoned, tz::TimeZone};

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: TimeZone,
}

impl Schedule {
    /// Parses a five-field cron expression (or `@hourly`-style macro) in an IANA time zone.
    pub fn parse(expr: &str, time_zone: &str) -> Result<Self, String> {
        let tz = parse_time_zone(time_zone)?;
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| format!("not a cron schedule ({e}): use five fields, minute hour day-of-month month day-of-week, or a macro such as @hourly"))?;
        Ok(Self { cron, tz })
    }

    /// The first run strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = after.to_zoned(self.tz.clone());
        self.cron.find_next_occurrence(&start, false).ok().map(|z: Zoned| z.timestamp())
    }

    /// The longest time between two consecutive runs within a year from `from` (looking
    /// at no more than 20 000 runs, which covers minute-level schedules for two weeks).
    pub fn max_gap(&self, from: Timestamp) -> Option<std::time::Duration> {
        let horizon = from.checked_add(Span::new().hours(24 * 400)).ok()?;
        let mut prev = self.next_after(from)?;
        let mut max = std::time::Duration::ZERO;
        for _ in 0..20_000 {
            let Some(next) = self.next_after(prev) else {
                break;
            };
            let gap = std::time::Duration::try_from(next.duration_since(prev)).unwrap_or_default();
            max = max.max(gap);
            if next > horizon {
                break;
            }
            prev = next;
        }
        Some(max)
    }
}

/// An IANA time zone name (`Europe/Berlin`, `UTC`).
pub fn parse_time_zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|_| "not a known IANA time zone (for example UTC or Europe/Berlin)".to_string())
}

/// Formats a duration the way Go's `time.Duration` prints (`1h30m0s`).
pub fn go_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn max_gap_of_common_schedules() {
        let from = at("2026-11-20T10:07:00Z");
        let table = [
            ("*/15 * * * *", "UTC", 15 * 60),
            ("@hourly", "UTC", 3600),
            ("0 2 * * *", "Europe/Berlin", 25 * 3600), // a DST change is within the year
            ("*/15 9-17 * * 1-5", "UTC", (2 * 24 + 15) * 3600 + 15 * 60),
            ("0 3 1 * *", "UTC", 31 * 24 * 3600),
        ];
        for (expr, tz, secs) in table {
            let gap = Schedule::parse(expr, tz).unwrap().max_gap(from).unwrap();
            assert_eq!(gap.as_secs(), secs, "{expr} in {tz}");
        }
    }

    #[test]
    fn next_after_respects_time_zone() {
        let s = Schedule::parse("0 2 * * *", "Europe/Berlin").unwrap();
        assert_eq!(s.next_after(at("2026-11-20T10:00:00Z")), Some(at("2026-11-21T01:00:00Z")));
    }

    #[test]
    fn rejects_what_cronjobs_reject() {
        for bad in ["every 15 minutes", "* * * *", "0 0 * * * *", "61 * * * *", ""] {
            assert!(Schedule::parse(bad, "UTC").is_err(), "{bad:?} was accepted");
        }
        assert!(Schedule::parse("@daily", "Mars/Olympus").is_err());
    }

    #[test]
    fn go_duration_format() {
        assert_eq!(go_duration(std::time::Duration::from_secs(900)), "15m0s");
        assert_eq!(go_duration(std::time::Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(go_duration(std::time::Duration::from_secs(42)), "42s");
    }
}
