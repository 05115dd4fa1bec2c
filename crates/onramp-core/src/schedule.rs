//! CSR availability and the slot finder (SPEC §8).
//!
//! A CSR works in their own time zone: `working_hours` are local wall-clock ranges per
//! weekday (`"09:00-12:00"`), turned into UTC instants date by date with the time zone's
//! rules, so a DST change moves the UTC slots and a spring-forward day is an hour shorter.
//! A wall-clock time that does not exist (in a spring-forward gap) starts at the end of the
//! gap; one that exists twice (fall back) is its first occurrence (jiff's "compatible"
//! disambiguation). A range ends the same local day (`"24:00"` is allowed as an end), so a
//! night shift is written as two ranges on consecutive days.
//!
//! [`earliest_slot`] finds the earliest start at or after `not_before` of a slot of the given
//! length that lies inside one working range and overlaps no blocked interval (time off and
//! the CSR's other scheduled tasks). [`choose`] picks among CSRs: earliest slot, then fewest
//! active tasks, then id.

use crate::CsrId;
use crate::time::Millis;
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use std::collections::BTreeMap;
use std::time::Duration;

/// How far ahead the slot finder looks before giving up.
pub const HORIZON_DAYS: i64 = 60;

/// The weekday keys of `working_hours`, Monday first.
pub const DAY_KEYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A problem with a CSR's schedule fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ScheduleError {
    /// Where (`working_hours.mon[1]`, `timezone`, ...).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Local working ranges per weekday, in minutes after local midnight, sorted and disjoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkingHours {
    days: [Vec<(u16, u16)>; 7],
}

impl WorkingHours {
    /// Parses `{"mon": ["09:00-12:00", "13:00-17:00"], ...}`; every problem is reported.
    pub fn parse(raw: &BTreeMap<String, Vec<String>>) -> Result<WorkingHours, Vec<ScheduleError>> {
        let mut errors = Vec::new();
        let mut hours = WorkingHours::default();
        for (day, ranges) in raw {
            let Some(index) = DAY_KEYS.iter().position(|d| d == day) else {
                errors.push(ScheduleError {
                    field: format!("working_hours.{day}"),
                    message: format!("unknown day; use one of {}", DAY_KEYS.join(", ")),
                });
                continue;
            };
            let mut parsed = Vec::new();
            for (i, range) in ranges.iter().enumerate() {
                match parse_range(range) {
                    Ok(r) => parsed.push((r, i)),
                    Err(message) => errors.push(ScheduleError {
                        field: format!("working_hours.{day}[{i}]"),
                        message,
                    }),
                }
            }
            parsed.sort();
            for pair in parsed.windows(2) {
                let ((a, _), (b, j)) = (pair[0], pair[1]);
                if b.0 < a.1 {
                    errors.push(ScheduleError {
                        field: format!("working_hours.{day}[{j}]"),
                        message: format!("`{}` overlaps another range of {day}", ranges[j]),
                    });
                }
            }
            hours.days[index] = parsed.into_iter().map(|(r, _)| r).collect();
        }
        if errors.is_empty() {
            Ok(hours)
        } else {
            Err(errors)
        }
    }

    /// The ranges of a weekday.
    pub fn on(&self, day: Weekday) -> &[(u16, u16)] {
        &self.days[usize::from(day.to_monday_zero_offset().unsigned_abs())]
    }

    /// Whether there is any working time at all.
    pub fn is_empty(&self) -> bool {
        self.days.iter().all(Vec::is_empty)
    }
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("`{s}` is not a range like `09:00-17:00`");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let start = parse_hhmm(a.trim()).ok_or_else(bad)?;
    let end = parse_hhmm(b.trim()).ok_or_else(bad)?;
    if start >= 24 * 60 {
        return Err(bad());
    }
    if end <= start {
        return Err(format!(
            "`{s}` ends before it starts (a range ends the same day; split a night shift in two)"
        ));
    }
    Ok((start, end))
}

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

/// Parses an IANA time zone name (`Europe/Berlin`).
pub fn parse_time_zone(name: &str) -> Result<TimeZone, ScheduleError> {
    if name.is_empty() || !name.contains('/') && name != "UTC" {
        return Err(ScheduleError {
            field: "timezone".into(),
            message: format!("`{name}` is not an IANA time zone name like `Europe/Berlin`"),
        });
    }
    TimeZone::get(name).map_err(|_| ScheduleError {
        field: "timezone".into(),
        message: format!("unknown time zone `{name}`"),
    })
}

/// A half-open interval `[from, to)` of UTC instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    /// Start (inclusive).
    pub from: Millis,
    /// End (exclusive).
    pub to: Millis,
}

impl Interval {
    /// Whether the two share any instant.
    pub fn overlaps(&self, other: &Interval) -> bool {
        self.from < other.to && other.from < self.to
    }
}

/// When a CSR can work.
#[derive(Debug, Clone)]
pub struct Availability {
    /// Their time zone.
    pub tz: TimeZone,
    /// Their working hours, local.
    pub hours: WorkingHours,
    /// Time off and already scheduled tasks.
    pub blocked: Vec<Interval>,
}

/// The working windows (UTC) of the local date `date`.
fn windows_on(tz: &TimeZone, hours: &WorkingHours, date: Date) -> Vec<Interval> {
    let mut out = Vec::new();
    for &(start, end) in hours.on(date.weekday()) {
        let Some(from) = local_instant(tz, date, start) else {
            continue;
        };
        let Some(to) = local_instant(tz, date, end) else {
            continue;
        };
        if from < to {
            out.push(Interval { from, to });
        }
    }
    out
}

fn local_instant(tz: &TimeZone, date: Date, minutes: u16) -> Option<Millis> {
    let dt = if minutes >= 24 * 60 {
        date.tomorrow().ok()?.to_datetime(Time::midnight())
    } else {
        let t = Time::new(
            i8::try_from(minutes / 60).ok()?,
            i8::try_from(minutes % 60).ok()?,
            0,
            0,
        )
        .ok()?;
        date.to_datetime(t)
    };
    let zoned = tz.to_ambiguous_zoned(dt).compatible().ok()?;
    Some(Millis(zoned.timestamp().as_millisecond()))
}

/// The earliest start `>= not_before` of a `duration` slot inside one working window and
/// clear of every blocked interval, looking [`HORIZON_DAYS`] ahead.
pub fn earliest_slot(av: &Availability, duration: Duration, not_before: Millis) -> Option<Millis> {
    let length = i64::try_from(duration.as_millis()).ok()?.max(1);
    let start_ts = jiff::Timestamp::from_millisecond(not_before.0).ok()?;
    let first_date = start_ts.to_zoned(av.tz.clone()).date().yesterday().ok()?;
    let mut blocked = av.blocked.clone();
    blocked.sort();
    let mut date = first_date;
    for _ in 0..=HORIZON_DAYS + 1 {
        for window in windows_on(&av.tz, &av.hours, date) {
            let mut at = window.from.max(not_before);
            loop {
                if at.0 + length > window.to.0 {
                    break;
                }
                let slot = Interval {
                    from: at,
                    to: Millis(at.0 + length),
                };
                match blocked
                    .iter()
                    .filter(|b| b.overlaps(&slot))
                    .map(|b| b.to)
                    .max()
                {
                    Some(end) => at = end,
                    None => return Some(at),
                }
            }
        }
        date = date.tomorrow().ok()?;
    }
    None
}

/// A CSR as the assignment sees them.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Who.
    pub id: CsrId,
    /// Their open assigned tasks.
    pub active_tasks: u32,
    /// Their capacity.
    pub max_active_tasks: u32,
    /// Their availability.
    pub availability: Availability,
}

/// Picks the CSR for a task of `duration`: among those under capacity, the earliest free
/// slot wins, then fewer active tasks, then the smaller id. Returns the index and the slot.
pub fn choose(
    candidates: &[Candidate],
    duration: Duration,
    now: Millis,
) -> Option<(usize, Millis)> {
    candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.active_tasks < c.max_active_tasks)
        .filter_map(|(i, c)| earliest_slot(&c.availability, duration, now).map(|at| (i, at)))
        .min_by(|(i, a), (j, b)| {
            let (ci, cj) = (&candidates[*i], &candidates[*j]);
            a.cmp(b)
                .then(ci.active_tasks.cmp(&cj.active_tasks))
                .then(ci.id.as_str().cmp(cj.id.as_str()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hours(spec: &[(&str, &[&str])]) -> WorkingHours {
        let raw = spec
            .iter()
            .map(|(d, rs)| (d.to_string(), rs.iter().map(|r| r.to_string()).collect()))
            .collect();
        WorkingHours::parse(&raw).unwrap()
    }

    fn at(s: &str) -> Millis {
        Millis::parse_rfc3339(s).unwrap()
    }

    fn weekdays(range: &'static str) -> WorkingHours {
        let r: &[&str] = &[range];
        hours(&[("mon", r), ("tue", r), ("wed", r), ("thu", r), ("fri", r)])
    }

    fn av(tz: &str, hours: WorkingHours, blocked: Vec<Interval>) -> Availability {
        Availability {
            tz: TimeZone::get(tz).unwrap(),
            hours,
            blocked,
        }
    }

    const HALF_HOUR: Duration = Duration::from_secs(30 * 60);

    #[test]
    fn ranges_are_validated() {
        let raw = |d: &str, r: &[&str]| {
            BTreeMap::from([(d.to_string(), r.iter().map(|s| s.to_string()).collect())])
        };
        assert!(WorkingHours::parse(&raw("mon", &["09:00-12:00", "13:00-24:00"])).is_ok());
        for bad in [
            &["9-12"][..],
            &["12:00-09:00"],
            &["09:00-12:00", "11:00-13:00"],
            &["25:00-26:00"],
            &["09:60-10:00"],
        ] {
            assert!(WorkingHours::parse(&raw("mon", bad)).is_err(), "{bad:?}");
        }
        let errors = WorkingHours::parse(&raw("funday", &["09:00-10:00"])).unwrap_err();
        assert_eq!(errors[0].field, "working_hours.funday");
        assert!(parse_time_zone("Europe/Berlin").is_ok());
        assert!(parse_time_zone("Mars/Olympus").is_err());
        assert!(parse_time_zone("CET5").is_err());
    }

    #[test]
    fn the_first_slot_is_the_next_working_minute_in_the_csrs_zone() {
        let a = av("Europe/Berlin", weekdays("09:00-17:00"), vec![]);
        // Friday 2026-01-16 18:00 Berlin (17:00Z): next is Monday 09:00 Berlin = 08:00Z.
        let slot = earliest_slot(&a, HALF_HOUR, at("2026-01-16T17:00:00Z")).unwrap();
        assert_eq!(slot, at("2026-01-19T08:00:00Z"));
        // Inside hours: now.
        let slot = earliest_slot(&a, HALF_HOUR, at("2026-01-19T10:00:00Z")).unwrap();
        assert_eq!(slot, at("2026-01-19T10:00:00Z"));
        // 16:45 Berlin: 30 minutes no longer fit today.
        let slot = earliest_slot(&a, HALF_HOUR, at("2026-01-19T15:45:00Z")).unwrap();
        assert_eq!(slot, at("2026-01-20T08:00:00Z"));
    }

    #[test]
    fn scheduled_tasks_and_time_off_are_skipped() {
        let busy = Interval {
            from: at("2026-01-19T08:00:00Z"),
            to: at("2026-01-19T08:30:00Z"),
        };
        let off = Interval {
            from: at("2026-01-19T08:30:00Z"),
            to: at("2026-01-21T00:00:00Z"),
        };
        let a = av("Europe/Berlin", weekdays("09:00-17:00"), vec![busy, off]);
        let slot = earliest_slot(&a, HALF_HOUR, at("2026-01-19T07:00:00Z")).unwrap();
        assert_eq!(slot, at("2026-01-21T08:00:00Z"));
    }

    #[test]
    fn berlin_dst_weeks_move_the_utc_slots() {
        let a = av("Europe/Berlin", weekdays("09:00-17:00"), vec![]);
        // Before the change (Fri 2026-03-27) 09:00 CET = 08:00Z; after it (Mon 03-30) 09:00 CEST = 07:00Z.
        assert_eq!(
            earliest_slot(&a, HALF_HOUR, at("2026-03-27T00:00:00Z")),
            Some(at("2026-03-27T08:00:00Z"))
        );
        assert_eq!(
            earliest_slot(&a, HALF_HOUR, at("2026-03-28T00:00:00Z")),
            Some(at("2026-03-30T07:00:00Z"))
        );
        // Autumn: Fri 2026-10-23 09:00 CEST = 07:00Z; Mon 10-26 09:00 CET = 08:00Z.
        assert_eq!(
            earliest_slot(&a, HALF_HOUR, at("2026-10-23T00:00:00Z")),
            Some(at("2026-10-23T07:00:00Z"))
        );
        assert_eq!(
            earliest_slot(&a, HALF_HOUR, at("2026-10-24T00:00:00Z")),
            Some(at("2026-10-26T08:00:00Z"))
        );
    }

    #[test]
    fn a_range_across_the_spring_forward_gap_is_an_hour_shorter() {
        // Sunday 2026-03-08 in New York: 02:00 -> 03:00. 01:00-04:00 local = 06:00Z-08:00Z.
        let a = av(
            "America/New_York",
            hours(&[("sun", &["01:00-04:00"])]),
            vec![],
        );
        let two_hours = Duration::from_secs(2 * 3600);
        let slot = earliest_slot(&a, two_hours, at("2026-03-08T00:00:00Z")).unwrap();
        assert_eq!(slot, at("2026-03-08T06:00:00Z"));
        let three_hours = Duration::from_secs(3 * 3600);
        let slot = earliest_slot(&a, three_hours, at("2026-03-08T00:00:00Z")).unwrap();
        assert_eq!(
            slot,
            at("2026-03-15T05:00:00Z"),
            "only a normal Sunday fits 3 h"
        );
        // A range starting inside the gap starts at its end (03:00 EDT = 07:00Z).
        let a = av(
            "America/New_York",
            hours(&[("sun", &["02:30-05:00"])]),
            vec![],
        );
        let slot = earliest_slot(&a, HALF_HOUR, at("2026-03-08T00:00:00Z")).unwrap();
        assert_eq!(slot, at("2026-03-08T07:30:00Z"));
    }

    #[test]
    fn a_working_day_spanning_midnight_utc() {
        // Los Angeles 15:00-19:00 (PST, UTC-8) = 23:00Z-03:00Z next day.
        let a = av("America/Los_Angeles", weekdays("15:00-19:00"), vec![]);
        let busy = Interval {
            from: at("2026-01-19T23:00:00Z"),
            to: at("2026-01-20T00:45:00Z"),
        };
        let a = Availability {
            blocked: vec![busy],
            ..a
        };
        let slot = earliest_slot(&a, HALF_HOUR, at("2026-01-19T20:00:00Z")).unwrap();
        assert_eq!(slot, at("2026-01-20T00:45:00Z"));
        let two_h = Duration::from_secs(2 * 3600);
        let slot = earliest_slot(&a, two_h, at("2026-01-19T20:00:00Z")).unwrap();
        assert_eq!(slot, at("2026-01-20T00:45:00Z"));
        let slot = earliest_slot(&a, HALF_HOUR, at("2026-01-20T02:45:00Z")).unwrap();
        assert_eq!(slot, at("2026-01-20T23:00:00Z"));
    }

    #[test]
    fn no_hours_no_slot() {
        let a = av("UTC", WorkingHours::default(), vec![]);
        assert_eq!(earliest_slot(&a, HALF_HOUR, Millis(0)), None);
    }

    #[test]
    fn choose_takes_the_earliest_slot_then_the_least_loaded() {
        let berlin = av("Europe/Berlin", weekdays("09:00-17:00"), vec![]);
        let ny = av("America/New_York", weekdays("09:00-17:00"), vec![]);
        let c = |id: &str, active, max, a: &Availability| Candidate {
            id: id.parse().unwrap(),
            active_tasks: active,
            max_active_tasks: max,
            availability: a.clone(),
        };
        let a_id = format!("csr_{}", "a".repeat(32));
        let b_id = format!("csr_{}", "b".repeat(32));
        // 12:00Z Monday: Berlin is working now, New York not until 14:00Z.
        let now = at("2026-01-19T12:00:00Z");
        let pick = choose(
            &[c(&a_id, 0, 5, &ny), c(&b_id, 3, 5, &berlin)],
            HALF_HOUR,
            now,
        );
        assert_eq!(pick, Some((1, now)));
        // Both free now: fewer active tasks wins.
        let pick = choose(
            &[c(&a_id, 2, 5, &berlin), c(&b_id, 1, 5, &berlin)],
            HALF_HOUR,
            now,
        );
        assert_eq!(pick, Some((1, now)));
        // At capacity: not eligible.
        assert_eq!(choose(&[c(&a_id, 5, 5, &berlin)], HALF_HOUR, now), None);
    }

    const ZONES: &[&str] = &[
        "Europe/Berlin",
        "America/New_York",
        "America/Los_Angeles",
        "Asia/Kolkata",
        "Australia/Sydney",
        "UTC",
    ];

    fn inside_working_hours(a: &Availability, slot: Interval) -> bool {
        let from = jiff::Timestamp::from_millisecond(slot.from.0)
            .unwrap()
            .to_zoned(a.tz.clone());
        let date = from.date();
        [date.yesterday().unwrap(), date].iter().any(|d| {
            windows_on(&a.tz, &a.hours, *d)
                .iter()
                .any(|w| w.from <= slot.from && slot.to <= w.to)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn slots_are_inside_hours_and_clear_of_everything_blocked(
            zone in 0..ZONES.len(),
            start_min in (0u16..20).prop_map(|h| h * 60),
            len_min in (1u16..10).prop_map(|h| h * 30),
            // 2026-01-01 .. 2027-01-01, so DST changes are crossed.
            now_s in 1_767_225_600i64..1_798_761_600i64,
            tasks in proptest::collection::vec((0i64..14 * 24 * 60, 15i64..180), 0..12),
            off in proptest::option::of((0i64..10 * 24 * 60, 60i64..5 * 24 * 60)),
            duration_min in 15u64..120,
        ) {
            let end = (start_min + len_min).min(24 * 60);
            let range = format!("{:02}:{:02}-{:02}:{:02}", start_min / 60, start_min % 60, end / 60, end % 60);
            let r = [range.as_str()];
            let h = hours(&[("mon", &r), ("wed", &r), ("thu", &r), ("sat", &r)]);
            let now = Millis(now_s * 1000);
            let minute = 60_000;
            let mut blocked: Vec<Interval> = tasks.iter().map(|(s, l)| Interval {
                from: Millis(now.0 + s * minute), to: Millis(now.0 + (s + l) * minute)
            }).collect();
            if let Some((s, l)) = off {
                blocked.push(Interval { from: Millis(now.0 + s * minute), to: Millis(now.0 + (s + l) * minute) });
            }
            let a = av(ZONES[zone], h, blocked.clone());
            let duration = Duration::from_secs(duration_min * 60);
            if let Some(from) = earliest_slot(&a, duration, now) {
                let slot = Interval { from, to: Millis(from.0 + duration_min as i64 * minute) };
                prop_assert!(from >= now);
                prop_assert!(inside_working_hours(&a, slot), "{slot:?} outside {range} in {}", ZONES[zone]);
                for b in &blocked {
                    prop_assert!(!b.overlaps(&slot), "{slot:?} overlaps {b:?}");
                }
            }
        }
    }
}
