//! Fire-time computation for schedule triggers.
//!
//! All instants are `DateTime<Utc>`; "after" bounds are exclusive, "until"/"now" bounds inclusive.
//!
//! # Cron
//! Expressions have 5 fields (`minute hour day-of-month month day-of-week`) or 6 with
//! seconds first. Day-of-week uses classic cron numbering: `0`-`7` (0 and 7 = Sunday) or
//! `SUN`-`SAT`. As in Vixie cron, when both day-of-month and day-of-week are restricted
//! (neither starts with `*`/`?`) a day matches if EITHER matches. Years 1970-2100 are supported.
//!
//! Cron fields describe LOCAL wall-clock times in the trigger's IANA time zone. Each matching
//! local time is mapped to an instant by these rules:
//! * normal local time: its single instant;
//! * nonexistent local time (spring-forward gap): the first instant after the gap, i.e. the
//!   transition itself (02:30 on the US spring-forward day in America/New_York fires at
//!   03:00 EDT = 07:00 UTC);
//! * repeated local time (fall-back): only its first (earlier, pre-transition) occurrence.
//!
//! This mapping is monotone, so fires are enumerated in order, and local times that map to the
//! same instant (e.g. 02:00, 02:30 and 03:00 on a spring-forward day) fire once: `next_fire`
//! returns the smallest fire strictly after `after`, so chained calls never repeat an instant.
//!
//! # Interval and once
//! `Interval` fires at `anchor + k * every` (k >= 0), where the anchor is `start_at` or the
//! schedule's `created_at`; `every` must be at least 1 second and is truncated to whole
//! milliseconds. `Once` fires at `at`. `Manual` never fires on its own, nor does `Event`: events
//! fire it (see [`crate::event`]).
//!
//! # Catch-up after downtime
//! [`plan_due`] takes the stored `next_fire_at`; if it is <= `now`, it and every later fire
//! <= `now` are due. A due fire >= `now - grace` is on time and is always kept. Older ones are
//! missed and filtered by [`CatchUpMode`]: `Skip` drops them all, `Once` keeps only the most
//! recent missed fire that is >= `now - window`, `All` keeps every missed fire >= `now - window`.
//! `fires` is sorted ascending and holds at most `max` entries, the most recent ones (so missed
//! fires are dropped before on-time ones). The plan's `next_fire_at` is the first fire strictly
//! after `now`. When nothing is due (`next_fire_at > now`) the plan is empty and keeps the
//! stored `next_fire_at`. Work is proportional to the fires within the grace/window span, not
//! to the length of the downtime.

use std::collections::VecDeque;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use cron::Schedule;

use crate::{CatchUp, CatchUpMode, Trigger};

/// Why a trigger cannot be used. Messages are meant to be shown to users as-is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    #[error(
        "invalid cron expression {expr:?}: {reason}; use 5 fields (minute hour day-of-month \
         month day-of-week) or 6 with seconds first"
    )]
    InvalidCron { expr: String, reason: String },
    #[error(
        "cron expression {expr:?} never matches a date between 1970 and 2100; check the \
         day-of-month and month fields"
    )]
    CronNeverFires { expr: String },
    #[error("unknown time zone {zone:?}; use an IANA name such as \"Europe/London\" or \"UTC\"")]
    UnknownTimeZone { zone: String },
    #[error(
        "interval of {every:?} is shorter than the minimum of 1s; use an interval of at least 1 second"
    )]
    IntervalTooShort { every: Duration },
    #[error("interval of {every:?} is too long to schedule; use a shorter interval")]
    IntervalTooLong { every: Duration },
    #[error(transparent)]
    Event(#[from] crate::event::EventError),
}

/// Result of [`plan_due`]: the fires to run now and the schedule's new next fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatchUpPlan {
    pub fires: Vec<DateTime<Utc>>,
    pub next_fire_at: Option<DateTime<Utc>>,
}

/// Checks that a trigger can be scheduled (cron syntax, time zone, interval length).
pub fn validate(trigger: &Trigger) -> Result<(), TriggerError> {
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    if let (Compiled::Cron(c), Trigger::Cron { expr, .. }) =
        (Compiled::new(trigger, epoch)?, trigger)
        && c.parts.iter().all(|s| s.after(&epoch).next().is_none())
    {
        return Err(TriggerError::CronNeverFires { expr: expr.clone() });
    }
    Ok(())
}

/// The first fire strictly after `after`, or `None` if the trigger will not fire again.
pub fn next_fire(
    trigger: &Trigger,
    created_at: DateTime<Utc>,
    after: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, TriggerError> {
    Ok(Compiled::new(trigger, created_at)?.next(after))
}

/// Fires in `(after, until]`, ascending, at most `max` of them (the earliest).
pub fn fires_between(
    trigger: &Trigger,
    created_at: DateTime<Utc>,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
    max: usize,
) -> Result<Vec<DateTime<Utc>>, TriggerError> {
    let compiled = Compiled::new(trigger, created_at)?;
    let mut fires = Vec::new();
    let mut cursor = after;
    while fires.len() < max {
        match compiled.next(cursor) {
            Some(t) if t <= until => {
                fires.push(t);
                cursor = t;
            }
            _ => break,
        }
    }
    Ok(fires)
}

/// Decides which due fires to run after downtime; see the module docs for the rules.
pub fn plan_due(
    trigger: &Trigger,
    created_at: DateTime<Utc>,
    next_fire_at: DateTime<Utc>,
    now: DateTime<Utc>,
    catch_up: CatchUp,
    grace: Duration,
    max: usize,
) -> Result<CatchUpPlan, TriggerError> {
    let compiled = Compiled::new(trigger, created_at)?;
    if next_fire_at > now {
        let next_fire_at = Some(next_fire_at);
        return Ok(CatchUpPlan {
            fires: Vec::new(),
            next_fire_at,
        });
    }
    let on_time_from = crate::time::sub_saturating(now, grace);
    let keep_from = match catch_up.mode {
        CatchUpMode::Skip => on_time_from,
        CatchUpMode::Once | CatchUpMode::All => {
            on_time_from.min(crate::time::sub_saturating(now, catch_up.window))
        }
    };
    // Due fires >= keep_from, ascending; a ring buffer keeps only the `max` most recent.
    let mut kept = VecDeque::new();
    let mut keep = |t: DateTime<Utc>| {
        kept.push_back(t);
        if kept.len() > max {
            kept.pop_front();
        }
    };
    if next_fire_at >= keep_from {
        keep(next_fire_at);
    }
    let before_keep_from = keep_from.checked_sub_signed(TimeDelta::nanoseconds(1));
    let mut cursor = next_fire_at.max(before_keep_from.unwrap_or(keep_from));
    while let Some(t) = compiled.next(cursor).filter(|t| *t <= now) {
        keep(t);
        cursor = t;
    }
    let mut fires = Vec::from(kept);
    if catch_up.mode == CatchUpMode::Once {
        let missed = fires.partition_point(|t| *t < on_time_from);
        fires.drain(..missed.saturating_sub(1));
    }
    Ok(CatchUpPlan {
        fires,
        next_fire_at: compiled.next(now),
    })
}

/// What the ledger records of a due fire that does not run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Missed, and the catch-up mode is `skip`.
    CatchUpSkip,
    /// Missed, folded into the later missed fire that catch-up `once` runs.
    CoalescedInto(DateTime<Utc>),
    /// Missed, older than the catch-up window.
    OutsideWindow,
    /// Missed, in the window but past the most fires one pass keeps.
    CatchUpLimit,
}

/// The decision about one due fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planned {
    /// Run it; `late` when it was missed and runs as catch-up.
    Run {
        late: bool,
    },
    Dropped(Dropped),
}

/// Result of [`plan_fires`]: a decision for every due fire from the stored
/// `next_fire_at` (at most `max_entries` of them), and the new cursor: the
/// first fire without a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirePlan {
    pub fires: Vec<(DateTime<Utc>, Planned)>,
    pub next_fire_at: Option<DateTime<Utc>>,
}

/// Like [`plan_due`], but decides every due fire rather than only those that
/// run: each fire in `[next_fire_at, now]` is either run (the fires
/// [`plan_due`] keeps) or dropped with the reason the catch-up policy drops
/// it. Fires before `record_from` (older than the schedule's retention, whose
/// record would be born expired) get no decision, unless they run. At most
/// `max_entries` fires are recorded in one call, besides the fires that run,
/// which are always decided (in order, after the chunk): then `next_fire_at`
/// is the first fire left (still due), and the next call goes on from there.
/// The fires kept to run are [`plan_due`]'s.
pub fn plan_fires(trigger: &Trigger, q: &FireQuery) -> Result<FirePlan, TriggerError> {
    let due = plan_due(
        trigger,
        q.created_at,
        q.next_fire_at,
        q.now,
        q.catch_up,
        q.grace,
        q.max_runs,
    )?;
    if q.next_fire_at > q.now {
        return Ok(FirePlan {
            fires: Vec::new(),
            next_fire_at: due.next_fire_at,
        });
    }
    let compiled = Compiled::new(trigger, q.created_at)?;
    // The fires that run are decided whatever else is recorded: a catch-up
    // run is never lost to the retention horizon, nor delayed by the chunks
    // of a long backlog (the records are insert-if-absent, so out of order is
    // fine: a later pass that meets them finds them decided).
    let record_from = due
        .fires
        .first()
        .map_or(q.record_from, |f| q.record_from.min(*f));
    let labels = Labels::new(q, &due.fires);
    let mut fires = Vec::new();
    let mut next = if q.next_fire_at >= record_from {
        Some(q.next_fire_at)
    } else {
        compiled.next(crate::time::sub_saturating(
            record_from,
            Duration::from_millis(1),
        ))
    };
    while let Some(t) = next.filter(|t| *t <= q.now) {
        if fires.len() >= q.max_entries {
            // The runs beyond this chunk are decided now all the same.
            let later = due.fires.iter().filter(|f| **f >= t);
            fires.extend(later.map(|f| (*f, labels.of(*f))));
            return Ok(FirePlan {
                fires,
                next_fire_at: Some(t),
            });
        }
        fires.push((t, labels.of(t)));
        next = compiled.next(t);
    }
    Ok(FirePlan {
        fires,
        next_fire_at: due.next_fire_at,
    })
}

/// What one pass asks of a schedule's trigger ([`plan_fires`]).
#[derive(Debug, Clone, Copy)]
pub struct FireQuery {
    /// When the schedule was made (an interval's grid starts there).
    pub created_at: DateTime<Utc>,
    /// The schedule's cursor: the first fire not yet decided.
    pub next_fire_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub catch_up: CatchUp,
    /// A fire this late or less is on time; a later one was missed.
    pub grace: Duration,
    /// Most fires that run in one pass.
    pub max_runs: usize,
    /// Fires before this are not recorded (past the retention).
    pub record_from: DateTime<Utc>,
    /// Most fires recorded in one pass, besides those that run.
    pub max_entries: usize,
}

/// How a pass labels each fire: run (on time or late), or dropped and why.
struct Labels<'a> {
    runs: &'a [DateTime<Utc>],
    mode: CatchUpMode,
    on_time_from: DateTime<Utc>,
    keep_from: DateTime<Utc>,
    /// The one missed fire catch-up `once` runs, which the others fold into.
    once_into: Option<DateTime<Utc>>,
}

impl<'a> Labels<'a> {
    fn new(q: &FireQuery, runs: &'a [DateTime<Utc>]) -> Self {
        let on_time_from = crate::time::sub_saturating(q.now, q.grace);
        let keep_from = match q.catch_up.mode {
            CatchUpMode::Skip => on_time_from,
            CatchUpMode::Once | CatchUpMode::All => {
                on_time_from.min(crate::time::sub_saturating(q.now, q.catch_up.window))
            }
        };
        let once_into = runs.first().copied().filter(|t| *t < on_time_from);
        Labels {
            runs,
            mode: q.catch_up.mode,
            on_time_from,
            keep_from,
            once_into,
        }
    }

    fn of(&self, t: DateTime<Utc>) -> Planned {
        if self.runs.binary_search(&t).is_ok() {
            return Planned::Run {
                late: t < self.on_time_from,
            };
        }
        Planned::Dropped(match self.mode {
            CatchUpMode::Skip if t < self.keep_from => Dropped::CatchUpSkip,
            CatchUpMode::Once | CatchUpMode::All if t < self.keep_from => Dropped::OutsideWindow,
            CatchUpMode::Once => match self.once_into {
                Some(into) if t < into => Dropped::CoalescedInto(into),
                _ => Dropped::CatchUpLimit,
            },
            _ => Dropped::CatchUpLimit,
        })
    }
}

/// Fires in `[from, to)`, ascending, at most `max + 1` (so a caller can tell
/// "more than `max`"). Unlike the live trigger, an interval without a
/// `start_at` extends before the schedule's creation (its grid runs back from
/// `created_at`), so a backfill can reach the time before a schedule existed.
pub fn backfill_fires(
    trigger: &Trigger,
    created_at: DateTime<Utc>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    max: usize,
) -> Result<Vec<DateTime<Utc>>, TriggerError> {
    let mut compiled = Compiled::new(trigger, created_at)?;
    if let (Compiled::Interval { every_ms, anchor }, Trigger::Interval { start_at: None, .. }) =
        (&mut compiled, trigger)
        && from < *anchor
    {
        // Move the anchor back onto the grid, at or before `from`.
        let back = (*anchor - from).num_milliseconds().div_euclid(*every_ms) + 1;
        if let Some(earlier) = back
            .checked_mul(*every_ms)
            .and_then(TimeDelta::try_milliseconds)
            .and_then(|d| anchor.checked_sub_signed(d))
        {
            *anchor = earlier;
        }
    }
    let mut fires = Vec::new();
    let mut next = compiled.next(crate::time::sub_saturating(from, Duration::from_millis(1)));
    while let Some(t) = next.filter(|t| *t < to) {
        fires.push(t);
        if fires.len() > max {
            break;
        }
        next = compiled.next(t);
    }
    Ok(fires)
}

/// A trigger parsed once so that repeated `next` calls are cheap.
enum Compiled {
    Cron(CronSchedule),
    Interval {
        every_ms: i64,
        anchor: DateTime<Utc>,
    },
    Once(DateTime<Utc>),
    Manual,
}

struct CronSchedule {
    tz: Tz,
    /// Evaluated on a naive local clock (`Utc` used as a naive clock); a time matches if any
    /// part matches (two parts when both day-of-month and day-of-week are restricted).
    parts: Vec<Schedule>,
}

impl Compiled {
    fn new(trigger: &Trigger, created_at: DateTime<Utc>) -> Result<Self, TriggerError> {
        Ok(match trigger {
            Trigger::Cron { expr, timezone } => {
                Compiled::Cron(CronSchedule::parse(expr, timezone)?)
            }
            Trigger::Interval { every, start_at } => {
                if *every < Duration::from_secs(1) {
                    return Err(TriggerError::IntervalTooShort { every: *every });
                }
                let every_ms = i64::try_from(every.as_millis())
                    .map_err(|_| TriggerError::IntervalTooLong { every: *every })?;
                Compiled::Interval {
                    every_ms,
                    anchor: start_at.unwrap_or(created_at),
                }
            }
            Trigger::Once { at } => Compiled::Once(*at),
            Trigger::Manual {} => Compiled::Manual,
            // Fired by events, never by time.
            Trigger::Event { name, filter } => {
                crate::event::check_name(name)?;
                if let Some(filter) = filter {
                    crate::event::check_filter(filter)?;
                }
                Compiled::Manual
            }
        })
    }

    fn next(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Compiled::Cron(c) => c.next(after),
            Compiled::Interval { every_ms, anchor } => {
                if *anchor > after {
                    return Some(*anchor);
                }
                let k = (after - *anchor).num_milliseconds() / every_ms + 1;
                let offset = TimeDelta::try_milliseconds(k.checked_mul(*every_ms)?)?;
                anchor.checked_add_signed(offset)
            }
            Compiled::Once(at) => (*at > after).then_some(*at),
            Compiled::Manual => None,
        }
    }
}

impl CronSchedule {
    fn parse(expr: &str, timezone: &str) -> Result<Self, TriggerError> {
        let invalid = |reason: String| TriggerError::InvalidCron {
            expr: expr.to_owned(),
            reason,
        };
        let tz = Tz::from_str(timezone).map_err(|_| TriggerError::UnknownTimeZone {
            zone: timezone.to_owned(),
        })?;
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => return Err(invalid(format!("expected 5 or 6 fields, found {n}"))),
        };
        let &[min, hour, dom, month, dow] = rest else {
            return Err(invalid("expected 5 or 6 fields".to_owned()));
        };
        let days = unix_days_of_week(dow).map_err(invalid)?;
        let star = |f: &str| f.starts_with('*') || f.starts_with('?');
        let variants = if star(dom) || star(dow) {
            vec![format!("{sec} {min} {hour} {dom} {month} {days}")]
        } else {
            vec![
                format!("{sec} {min} {hour} {dom} {month} *"),
                format!("{sec} {min} {hour} * {month} {days}"),
            ]
        };
        let parts = variants
            .iter()
            .map(|v| Schedule::from_str(v).map_err(|e| invalid(cron_reason(&e.to_string()))))
            .collect::<Result<_, _>>()?;
        Ok(CronSchedule { tz, parts })
    }

    fn next(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Cron fires between 1970 and 2100 only; outside those years (a backfill
        // window from year -262143, say) a local wall clock may not even exist.
        const FIRST: i64 = -86_400; // 1969-12-31, a day before the first fire
        const END: i64 = 4_133_980_800; // 2101-01-01
        if after.timestamp() >= END {
            return None;
        }
        let after = after.max(DateTime::from_timestamp(FIRST, 0)?);
        // Every local time <= `after`'s wall-clock time maps to an instant <= `after`, and the
        // mapping is monotone, so the answer is the first later local time mapping past
        // `after` (in a repeated hour's second pass, its times map to the first pass: skipped).
        let start = after.with_timezone(&self.tz).naive_local();
        self.parts
            .iter()
            .filter_map(|s| {
                s.after(&start.and_utc())
                    .filter_map(|local| local_to_utc(self.tz, local.naive_utc()))
                    .find(|t| *t > after)
            })
            .min()
    }
}

/// Maps a local wall-clock time to an instant: the earlier occurrence when repeated, the
/// end of the gap (the transition instant) when it does not exist.
fn local_to_utc(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.to_utc()),
        LocalResult::Ambiguous(a, b) => Some(a.min(b).to_utc()),
        LocalResult::None => {
            // Binary search (whole seconds) for the first instant whose wall clock is past
            // `local`; tz transitions happen on whole seconds and offsets are below 1 day.
            let wall = |secs: i64| {
                DateTime::from_timestamp(secs, 0).map(|u| u.with_timezone(&tz).naive_local())
            };
            let target = local.and_utc().timestamp();
            let (mut lo, mut hi) = (target - 86_400, target + 86_400);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if wall(mid)? < local {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            DateTime::from_timestamp(hi, 0)
        }
    }
}

/// Rewrites a classic day-of-week field (0-7, 0 and 7 = Sunday, or names) as the `cron`
/// crate's names, since that crate numbers days 1-7 from Sunday.
fn unix_days_of_week(field: &str) -> Result<String, String> {
    const NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    if field == "*" || field == "?" {
        return Ok(field.to_owned());
    }
    let value = |s: &str| match s.parse::<usize>() {
        Ok(n) if n <= 7 => Ok(n),
        Ok(n) => Err(format!(
            "day-of-week {n} is out of range; use 0-7 (0 or 7 = Sunday)"
        )),
        Err(_) => NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown day of week {s:?}; use 0-7 or SUN-SAT")),
    };
    let mut days = [false; 7];
    for item in field.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => match step.parse::<usize>() {
                Ok(step) if step > 0 => (base, Some(step)),
                _ => return Err(format!("invalid day-of-week step in {item:?}")),
            },
            None => (item, None),
        };
        let (lo, hi) = match (base, base.split_once('-')) {
            ("*" | "?", _) => (0, 7),
            (_, Some((a, b))) => (value(a)?, value(b)?),
            (v, None) => {
                let v = value(v)?;
                (v, if step.is_some() { 7 } else { v })
            }
        };
        if lo > hi {
            return Err(format!("day-of-week range {base:?} ends before it starts"));
        }
        for d in (lo..=hi).step_by(step.unwrap_or(1)) {
            days[d % 7] = true;
        }
    }
    let names: Vec<&str> = (0..7).filter(|&d| days[d]).map(|d| NAMES[d]).collect();
    Ok(names.join(","))
}

/// The useful line of a `cron` crate error (it also echoes the input with a caret).
fn cron_reason(message: &str) -> String {
    let line = message
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(message);
    line.trim().replace("must be less than", "must be at most")
}

#[cfg(test)]
mod tests;
