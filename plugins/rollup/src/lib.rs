//! A realistic task: roll up numeric readings into running statistics.
//!
//! Each run receives a batch of readings, folds them into the totals kept in the
//! plugin's key-value state (so the numbers survive across runs and nodes), and
//! returns a report. Config `series` names the series (default `"default"`), so
//! several schedules can share the plugin without sharing totals.

use serde::{Deserialize, Serialize};
use taskhost_sdk::{Context, Error, Result, export_task};

#[derive(Deserialize)]
struct Input {
    readings: Vec<f64>,
}

#[derive(Serialize, Deserialize, Default)]
struct Totals {
    count: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
    runs: u64,
}

#[derive(Serialize)]
struct Report {
    series: String,
    batch: usize,
    count: u64,
    mean: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    runs: u64,
}

fn rollup(ctx: &Context, input: Input) -> Result<Report> {
    if let Some(bad) = input.readings.iter().find(|r| !r.is_finite()) {
        return Err(Error::fatal(format!(
            "reading {bad} is not a finite number"
        )));
    }
    let series = ctx.config("series").unwrap_or_else(|| "default".into());
    let key = format!("totals/{series}");
    let mut totals: Totals = ctx.kv_get(&key)?.unwrap_or_default();
    for &r in &input.readings {
        totals.count += 1;
        totals.sum += r;
        totals.min = Some(totals.min.map_or(r, |m| m.min(r)));
        totals.max = Some(totals.max.map_or(r, |m| m.max(r)));
    }
    totals.runs += 1;
    ctx.kv_set(&key, &totals)?;
    ctx.info(&format!(
        "{series}: +{} readings, {} in all",
        input.readings.len(),
        totals.count
    ));
    Ok(Report {
        series,
        batch: input.readings.len(),
        count: totals.count,
        mean: (totals.count > 0).then(|| totals.sum / totals.count as f64),
        min: totals.min,
        max: totals.max,
        runs: totals.runs,
    })
}

export_task!(rollup);
