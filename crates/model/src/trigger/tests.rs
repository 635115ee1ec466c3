//! Tests of the parent module.
use super::*;

const NY: &str = "America/New_York";
const LDN: &str = "Europe/London";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("valid time")
        .to_utc()
}

/// "MM-DD HH:MM[:SS[.fff]]" in 2026, UTC.
fn z(s: &str) -> DateTime<Utc> {
    let s = if s.len() == 11 {
        format!("{s}:00")
    } else {
        s.to_owned()
    };
    t(&format!("2026-{}Z", s.replacen(' ', "T", 1)))
}

/// "10-24 23:00, 10-25 00:00, 02:00": a time without a date reuses the previous date.
fn expand(list: &str) -> Vec<DateTime<Utc>> {
    let mut day = "";
    let times = list.split(", ").map(|item| match item.split_once(' ') {
        Some((d, time)) => (d, time),
        None => ("", item),
    });
    let times = times.map(|(d, time)| {
        day = if d.is_empty() { day } else { d };
        z(&format!("{day} {time}"))
    });
    times.collect()
}

fn cron(expr: &str, tz: &str) -> Trigger {
    Trigger::Cron {
        expr: expr.into(),
        timezone: tz.into(),
    }
}

/// Each case: (expr, zone, after, until, expected fires in (after, until]). Also checks
/// that `next_fire` from 720 evenly spread instants (and +0.5 s) in the range agrees.
fn check(cases: &[(&str, &str, &str, &str, &str)]) {
    for &(expr, zone, after, until, expected) in cases {
        let (trigger, after, until) = (cron(expr, zone), z(after), z(until));
        let fires = fires_between(&trigger, after, after, until, 1000).unwrap();
        assert_eq!(fires, expand(expected), "{expr} in {zone}");
        let step = ((until - after) / 720).max(TimeDelta::seconds(1));
        let mut probe = after;
        while probe < until {
            for p in [probe, probe + TimeDelta::milliseconds(500)] {
                let got = next_fire(&trigger, after, p).unwrap();
                match fires.iter().find(|f| **f > p) {
                    Some(f) => assert_eq!(got, Some(*f), "{expr} in {zone} after {p}"),
                    None => assert!(got.is_none_or(|g| g > until), "{expr} after {p}"),
                }
            }
            probe += step;
        }
    }
}

#[rustfmt::skip]
#[test]
fn new_york_dst_2026() {
    check(&[
        // Spring forward Sun 03-08 02:00 EST -> 03:00 EDT (07:00Z): 02:xx fires once at 07:00Z.
        ("30 2 * * *", NY, "03-07 00:00", "03-10 00:00", "03-07 07:30, 03-08 07:00, 03-09 06:30"),
        ("0 * * * *", NY, "03-08 04:59", "03-08 09:00", "03-08 05:00, 06:00, 07:00, 08:00, 09:00"),
        ("*/15 * * * *", NY, "03-08 06:29", "03-08 07:30", "03-08 06:30, 06:45, 07:00, 07:15, 07:30"),
        // Fall back Sun 11-01 02:00 EDT -> 01:00 EST (06:00Z): 01:xx fires once, as EDT.
        ("30 2 * * *", NY, "10-31 00:00", "11-03 00:00", "10-31 06:30, 11-01 07:30, 11-02 07:30"),
        ("30 1 * * *", NY, "10-31 12:00", "11-02 12:00", "11-01 05:30, 11-02 06:30"),
        ("0 * * * *", NY, "11-01 03:00", "11-01 08:00", "11-01 04:00, 05:00, 07:00, 08:00"),
        ("*/15 * * * *", NY, "11-01 04:45", "11-01 07:15", "11-01 05:00, 05:15, 05:30, 05:45, 07:00, 07:15"),
        // Seconds form: 02:30:15 does not exist on 03-08.
        ("15 30 2 * * *", NY, "03-07 12:00", "03-09 12:00", "03-08 07:00, 03-09 06:30:15"),
    ]);
}

#[rustfmt::skip]
#[test]
fn london_dst_2026() {
    check(&[
        // Spring forward Sun 03-29 01:00 GMT -> 02:00 BST (01:00Z).
        ("30 1 * * *", LDN, "03-28 00:00", "03-31 00:00", "03-28 01:30, 03-29 01:00, 03-30 00:30"),
        ("30 2 * * *", LDN, "03-28 00:00", "03-31 00:00", "03-28 02:30, 03-29 01:30, 03-30 01:30"),
        ("0 * * * *", LDN, "03-28 23:00", "03-29 03:00", "03-29 00:00, 01:00, 02:00, 03:00"),
        ("*/15 * * * *", LDN, "03-29 00:30", "03-29 01:30", "03-29 00:45, 01:00, 01:15, 01:30"),
        // Fall back Sun 10-25 02:00 BST -> 01:00 GMT (01:00Z).
        ("30 1 * * *", LDN, "10-24 00:00", "10-27 00:00", "10-24 00:30, 10-25 00:30, 10-26 01:30"),
        ("30 2 * * *", LDN, "10-24 00:00", "10-26 00:00", "10-24 01:30, 10-25 02:30"),
        ("0 * * * *", LDN, "10-24 22:00", "10-25 03:00", "10-24 23:00, 10-25 00:00, 02:00, 03:00"),
        ("*/15 * * * *", LDN, "10-24 23:45", "10-25 02:15", "10-25 00:00, 00:15, 00:30, 00:45, 02:00, 02:15"),
    ]);
}

#[test]
fn fall_back_second_pass_does_not_refire() {
    let quarter = cron("*/15 * * * *", NY);
    for after in ["11-01 06:00", "11-01 06:20:00.250", "11-01 06:59:59"] {
        let next = next_fire(&quarter, z(after), z(after)).unwrap();
        assert_eq!(next, Some(z("11-01 07:00")), "after {after}");
    }
}

#[test]
fn six_field_seconds_cron() {
    check(&[(
        "*/10 * * * * *",
        "UTC",
        "05-01 12:00",
        "05-01 12:01",
        "05-01 12:00:10, 12:00:20, 12:00:30, 12:00:40, 12:00:50, 12:01:00",
    )]);
    let every10 = cron("*/10 * * * * *", "UTC");
    let next = next_fire(&every10, z("05-01 12:00"), z("05-01 12:00:09.999")).unwrap();
    assert_eq!(next, Some(z("05-01 12:00:10")));
    let capped = fires_between(
        &every10,
        z("05-01 12:00"),
        z("05-01 12:00"),
        z("05-02 12:00"),
        2,
    );
    assert_eq!(capped.unwrap(), expand("05-01 12:00:10, 12:00:20"));
}

#[test]
fn day_of_week_uses_classic_numbering_and_or_semantics() {
    let sat = z("03-07 00:00");
    let cases = [
        ("0 9 * * 1-5", "03-09 09:00"),
        ("0 9 * * 0", "03-08 09:00"),
        ("0 9 * * 7", "03-08 09:00"),
        ("0 9 * * sun", "03-08 09:00"),
        ("0 9 * * MON-FRI", "03-09 09:00"),
        ("0 9 * * */2", "03-07 09:00"),
        ("0 9 * * 2/7", "03-10 09:00"),
    ];
    for (expr, expected) in cases {
        let next = next_fire(&cron(expr, "UTC"), sat, sat).unwrap();
        assert_eq!(next, Some(z(expected)), "{expr}");
    }
    // Both restricted: the 1st of the month OR any Monday.
    check(&[(
        "0 0 1 * 1",
        "UTC",
        "03-01 00:00",
        "04-07 00:00",
        "03-02 00:00, 03-09 00:00, 03-16 00:00, 03-23 00:00, 03-30 00:00, 04-01 00:00, 04-06 00:00",
    )]);
}

#[test]
fn interval_once_manual() {
    let created = z("01-01 00:00");
    let every = Trigger::Interval {
        every: Duration::from_secs(90),
        start_at: None,
    };
    let next = |after: &str| next_fire(&every, created, t(after)).unwrap();
    assert_eq!(next("2025-12-31T00:00:00Z"), Some(created));
    assert_eq!(next("2026-01-01T00:00:00Z"), Some(z("01-01 00:01:30")));
    assert_eq!(next("2026-01-01T00:01:29.999Z"), Some(z("01-01 00:01:30")));
    assert_eq!(next("2026-01-01T00:01:40Z"), Some(z("01-01 00:03:00")));
    let start_at = Some(z("02-01 00:00:00.250"));
    let anchored = Trigger::Interval {
        every: Duration::from_millis(1500),
        start_at,
    };
    let fires = fires_between(&anchored, created, created, z("02-01 00:00:03"), 10);
    assert_eq!(fires.unwrap(), expand("02-01 00:00:00.250, 00:00:01.750"));

    let at = z("06-01 10:00:00.123");
    let once = Trigger::Once { at };
    assert_eq!(next_fire(&once, created, created).unwrap(), Some(at));
    assert_eq!(next_fire(&once, created, at).unwrap(), None);
    assert_eq!(
        next_fire(&Trigger::Manual {}, created, created).unwrap(),
        None
    );
    assert!(
        fires_between(&Trigger::Manual {}, created, created, at, 9)
            .unwrap()
            .is_empty()
    );
}

/// `*/5 * * * *` stored to fire at 06:00; the host comes back 6 h later at 12:00:30.
fn plan(mode: CatchUpMode, window_mins: u64, max: usize) -> Vec<DateTime<Utc>> {
    let catch_up = CatchUp {
        mode,
        window: Duration::from_secs(window_mins * 60),
    };
    let (stored, now, grace) = (
        z("04-01 06:00"),
        z("04-01 12:00:30"),
        Duration::from_secs(60),
    );
    let plan = plan_due(
        &cron("*/5 * * * *", "UTC"),
        stored,
        stored,
        now,
        catch_up,
        grace,
        max,
    );
    let plan = plan.unwrap();
    assert_eq!(plan.next_fire_at, Some(z("04-01 12:05")));
    plan.fires
}

#[test]
fn catch_up_modes_after_downtime() {
    use CatchUpMode::*;
    assert_eq!(plan(Skip, 60, 100), expand("04-01 12:00"));
    assert_eq!(plan(Once, 60, 100), expand("04-01 11:55, 12:00"));
    let all =
        "04-01 11:05, 11:10, 11:15, 11:20, 11:25, 11:30, 11:35, 11:40, 11:45, 11:50, 11:55, 12:00";
    assert_eq!(plan(All, 60, 100), expand(all));
    // Window smaller than the downtime; window too small to reach any missed fire.
    assert_eq!(
        plan(All, 20, 100),
        expand("04-01 11:45, 11:50, 11:55, 12:00")
    );
    assert_eq!(plan(Once, 1, 100), expand("04-01 12:00"));
    // Capped by max, keeping the most recent; a window covering all of the downtime.
    assert_eq!(
        plan(All, 60, 5),
        expand("04-01 11:40, 11:45, 11:50, 11:55, 12:00")
    );
    assert_eq!(plan(All, 24 * 60, 1000).len(), 73);
    assert_eq!(plan(Once, 24 * 60, 1000), expand("04-01 11:55, 12:00"));
}

#[test]
fn catch_up_edge_cases() {
    let trig = cron("*/5 * * * *", "UTC");
    let all = CatchUp {
        mode: CatchUpMode::All,
        window: Duration::from_secs(3600),
    };
    let (created, now, later) = (z("04-01 00:00"), z("04-01 12:00:30"), z("04-01 12:05"));
    // Not due yet: nothing to run, stored next fire kept.
    let plan = plan_due(&trig, created, later, now, all, Duration::ZERO, 10).unwrap();
    assert_eq!(
        plan,
        CatchUpPlan {
            fires: vec![],
            next_fire_at: Some(later)
        }
    );
    // Zero grace: 12:00 is missed (30 s late), so Skip drops it.
    let skip = CatchUp {
        mode: CatchUpMode::Skip,
        ..all
    };
    let stored = z("04-01 12:00");
    let plan = plan_due(&trig, created, stored, now, skip, Duration::ZERO, 10).unwrap();
    assert_eq!(
        plan,
        CatchUpPlan {
            fires: vec![],
            next_fire_at: Some(later)
        }
    );
    // A once trigger that came due during downtime runs, then has no next fire.
    let at = z("04-01 11:30");
    let plan = plan_due(
        &Trigger::Once { at },
        created,
        at,
        now,
        all,
        Duration::ZERO,
        10,
    );
    assert_eq!(
        plan.unwrap(),
        CatchUpPlan {
            fires: vec![at],
            next_fire_at: None
        }
    );
}

#[test]
fn validation_errors() {
    let err = |t: Trigger| validate(&t).expect_err("should be invalid").to_string();
    let every = |every| Trigger::Interval {
        every,
        start_at: None,
    };
    assert_eq!(validate(&cron("*/5 * * * *", NY)), Ok(()));
    assert_eq!(validate(&cron("0 0 0 1 1 *", "UTC")), Ok(()));
    assert_eq!(validate(&every(Duration::from_secs(1))), Ok(()));
    assert_eq!(validate(&Trigger::Manual {}), Ok(()));
    assert_eq!(
        err(cron("61 * * * *", "UTC")),
        "invalid cron expression \"61 * * * *\": Minutes must be at most 59. ('61' specified.); \
         use 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first"
    );
    assert!(err(cron("* * *", "UTC")).contains(": expected 5 or 6 fields, found 3; use 5"));
    assert!(err(cron("0 9 * * 8", "UTC")).contains("day-of-week 8 is out of range; use 0-7"));
    assert!(err(cron("0 9 * * fry", "UTC")).contains("unknown day of week \"fry\""));
    assert!(err(cron("0 0 30 2 *", "UTC")).contains("\"0 0 30 2 *\" never matches a date"));
    assert_eq!(
        err(cron("0 * * * *", "Mars/Base")),
        "unknown time zone \"Mars/Base\"; use an IANA name such as \"Europe/London\" or \"UTC\""
    );
    assert_eq!(
        err(every(Duration::ZERO)),
        "interval of 0ns is shorter than the minimum of 1s; use an interval of at least 1 second"
    );
    assert!(err(every(Duration::from_millis(999))).contains("999ms is shorter"));
    assert!(err(every(Duration::MAX)).contains("is too long to schedule"));
    // Errors also surface from the computing functions.
    let now = z("01-01 00:00");
    assert!(next_fire(&cron("0 * * * *", "Nowhere"), now, now).is_err());
}

#[test]
fn plan_fires_decides_every_due_fire() {
    let trig = cron("* * * * *", "UTC");
    let created = z("04-01 00:00");
    let now = z("04-01 12:10");
    let stored = z("04-01 12:00");
    let window = |mode, mins: u64| CatchUp {
        mode,
        window: Duration::from_secs(60 * mins),
    };
    let run = |late| Planned::Run { late };
    let plan = |catch_up, record_from, chunk| {
        plan_fires(
            &trig,
            &FireQuery {
                created_at: created,
                next_fire_at: stored,
                now,
                catch_up,
                grace: Duration::ZERO,
                max_runs: 1000,
                record_from,
                max_entries: chunk,
            },
        )
        .unwrap()
    };
    let labels = |p: &FirePlan| p.fires.iter().map(|(_, l)| *l).collect::<Vec<_>>();
    // Skip: 12:00-12:09 skipped, 12:10 on time.
    let p = plan(window(CatchUpMode::Skip, 5), created, 100);
    assert_eq!(p.fires.len(), 11);
    assert!(
        labels(&p)[..10]
            .iter()
            .all(|l| *l == Planned::Dropped(Dropped::CatchUpSkip))
    );
    assert_eq!(p.fires[10], (now, run(false)));
    assert_eq!(p.next_fire_at, Some(z("04-01 12:11")));
    // Once, window 5 min: 12:00-12:04 outside it, 12:05-12:08 into 12:09.
    let p = plan(window(CatchUpMode::Once, 5), created, 100);
    let l = labels(&p);
    assert!(
        l[..5]
            .iter()
            .all(|l| *l == Planned::Dropped(Dropped::OutsideWindow))
    );
    let into = z("04-01 12:09");
    assert!(
        l[5..9]
            .iter()
            .all(|l| *l == Planned::Dropped(Dropped::CoalescedInto(into)))
    );
    assert_eq!(&l[9..], &[run(true), run(false)]);
    // All: 12:05-12:09 caught up; the kept fires equal plan_due's.
    let p = plan(window(CatchUpMode::All, 5), created, 100);
    let runs: Vec<_> = p
        .fires
        .iter()
        .filter(|(_, l)| matches!(l, Planned::Run { .. }))
        .map(|(t, _)| *t)
        .collect();
    let due = plan_due(
        &trig,
        created,
        stored,
        now,
        window(CatchUpMode::All, 5),
        Duration::ZERO,
        1000,
    );
    assert_eq!(runs, due.unwrap().fires);
    // Fires older than `record_from` get no decision, unless they run.
    let p = plan(window(CatchUpMode::Skip, 5), z("04-01 12:08"), 100);
    assert_eq!(p.fires.first().map(|f| f.0), Some(z("04-01 12:08")));
    let p = plan(window(CatchUpMode::Once, 5), z("04-01 12:10"), 100);
    assert_eq!(p.fires, vec![(into, run(true)), (now, run(false))]);
    // Chunks: four at a time, the cursor left on the first undecided fire;
    // the fires that run are decided in the first chunk all the same.
    let p = plan(window(CatchUpMode::Skip, 5), created, 4);
    assert_eq!(p.fires.len(), 5);
    assert_eq!(p.fires[4], (now, run(false)));
    assert_eq!(p.next_fire_at, Some(z("04-01 12:04")));
}

#[test]
fn backfill_fires_reach_before_an_interval_began() {
    let created = z("04-01 12:00:30");
    let every = Trigger::Interval {
        every: Duration::from_secs(60),
        start_at: None,
    };
    let fires = backfill_fires(&every, created, z("04-01 11:00:30"), created, 1000).unwrap();
    assert_eq!(fires.len(), 60);
    assert_eq!(fires[0], z("04-01 11:00:30"));
    assert_eq!(fires[59], z("04-01 11:59:30"));
    // At most max + 1, so a caller can tell "too many".
    let secs = cron("* * * * * *", "UTC");
    let fires = backfill_fires(&secs, created, z("04-01 11:00"), z("04-01 12:00"), 10).unwrap();
    assert_eq!(fires.len(), 11);
}
