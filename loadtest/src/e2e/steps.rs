//! Rate steps: the pipeline at START, START+STEP, ... up to MAX events/s, each held for `hold`
//! seconds (count = rate × hold) on fresh streams, until a step falls short; the last step that
//! did not is the highest sustained rate.

use std::str::FromStr;

use super::{run, us_text, Load, Report};
use crate::{LoadError, Result};

/// A step falls short when its µs e2e p95 reaches this, µs (50 ms).
pub const MAX_P95_US: u64 = 50_000;
/// A step falls short when the publisher achieved less than this share of the target rate.
pub const MIN_PUBLISH_SHARE: f64 = 0.95;

/// `START,STEP,MAX` events/s and the hold of each step.
#[derive(Debug, Clone, PartialEq)]
pub struct Steps {
    /// The first rate, events/s.
    pub start: f64,
    /// The increment, events/s.
    pub step: f64,
    /// The last rate tried, events/s (at most).
    pub max: f64,
    /// Seconds at each rate.
    pub hold_s: u64,
}

impl FromStr for Steps {
    type Err = String;

    /// `START,STEP,MAX`, all positive, MAX ≥ START; the hold is 60 s until set.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let parts: Vec<f64> = s
            .split(',')
            .map(|p| p.trim().parse::<f64>().map_err(|e| format!("{p:?}: {e}")))
            .collect::<std::result::Result<_, _>>()?;
        let [start, step, max] = parts.as_slice() else {
            return Err(format!("expected START,STEP,MAX (events/s), got {s:?}"));
        };
        if !(start.is_finite() && step.is_finite() && max.is_finite() && *start > 0.0 && *step > 0.0) {
            return Err(format!("START and STEP must be positive, got {s:?}"));
        }
        if max < start {
            return Err(format!("MAX must be at least START, got {s:?}"));
        }
        Ok(Steps {
            start: *start,
            step: *step,
            max: *max,
            hold_s: 60,
        })
    }
}

impl Steps {
    /// With `hold_s` seconds per step.
    #[must_use]
    pub fn with_hold(mut self, hold_s: u64) -> Self {
        self.hold_s = hold_s;
        self
    }

    /// The rates, in order.
    pub fn rates(&self) -> Vec<f64> {
        let n = ((self.max - self.start) / self.step + 1e-9).floor() as usize;
        (0..=n).map(|i| self.start + self.step * i as f64).collect()
    }
}

/// One step's run.
#[derive(Debug, Clone)]
pub struct Step {
    /// The target rate, events/s.
    pub rate: f64,
    /// The load it ran.
    pub load: Load,
    /// Its figures, or why it could not be made.
    pub outcome: std::result::Result<Report, String>,
    /// Why it fell short (`None`: sustained).
    pub shortfall: Option<String>,
}

impl Step {
    /// The step's line.
    pub fn line(&self) -> String {
        let figures = match &self.outcome {
            Ok(r) => format!(
                "published {:.0}/s, filtered {:.0}/s, e2e {}, lost {}, duplicates {}",
                r.publish_rate,
                r.filter_rate,
                us_text(&r.tail.e2e_us),
                r.lost,
                r.duplicates
            ),
            Err(e) => format!("no figures: {e}"),
        };
        let verdict = self.shortfall.as_deref().unwrap_or("sustained");
        format!(
            "step {:.0}/s × {:.0} s: {figures}; {verdict}",
            self.rate,
            self.load.count as f64 / self.rate
        )
    }
}

/// Every step run, and the highest sustained rate.
#[derive(Debug, Clone, Default)]
pub struct StepsReport {
    /// The steps, in order; the last one fell short unless every rate was sustained.
    pub steps: Vec<Step>,
}

impl StepsReport {
    /// The highest rate of a step that did not fall short (steps stop at the first that does).
    pub fn highest_sustained(&self) -> Option<f64> {
        self.steps.iter().rev().find(|s| s.shortfall.is_none()).map(|s| s.rate)
    }

    /// The closing line.
    pub fn line(&self) -> String {
        let why = self
            .steps
            .last()
            .and_then(|s| {
                s.shortfall
                    .as_ref()
                    .map(|w| format!(" (stopped at {:.0}/s: {w})", s.rate))
            })
            .unwrap_or_default();
        match self.highest_sustained() {
            Some(r) => format!(
                "highest sustained rate: {r:.0}/s (e2e p95 < {} ms, 0 lost, publisher ≥ {:.0} % of the target){why}",
                MAX_P95_US / 1000,
                MIN_PUBLISH_SHARE * 100.0
            ),
            None => format!("highest sustained rate: none{why}"),
        }
    }
}

/// Why a step at `target` events/s fell short, `None` when it held: the µs e2e p95 reached
/// [`MAX_P95_US`], an event was lost, not every event was timed, or the publisher achieved less
/// than [`MIN_PUBLISH_SHARE`] of the target.
pub fn shortfall(target: f64, r: &Report) -> Option<String> {
    let mut why = Vec::new();
    if r.lost > 0 {
        why.push(format!("{} lost", r.lost));
    }
    if r.tail.e2e_us.p95 >= MAX_P95_US {
        why.push(format!(
            "e2e p95 {} ms ≥ {} ms",
            super::ms3(r.tail.e2e_us.p95),
            MAX_P95_US / 1000
        ));
    }
    if r.publish_rate < target * MIN_PUBLISH_SHARE {
        why.push(format!(
            "the publisher achieved {:.0}/s < {:.0} % of {target:.0}/s",
            r.publish_rate,
            MIN_PUBLISH_SHARE * 100.0
        ));
    }
    if r.tail.timed < r.published {
        why.push(format!("{} of {} events timed", r.tail.timed, r.published));
    }
    (!why.is_empty()).then(|| why.join(", "))
}

/// Runs [`run`] at each rate of `steps` (streams under `<prefix>-<rate>`, deleted after each
/// step), calling `each` after every step, and stops at the first step that falls short (see
/// [`shortfall`]); a step that cannot be made (say, its backlog does not drain in time) falls
/// short too.
///
/// # Errors
/// `steps` holds no rate, or its hold is 0.
pub async fn run_steps(
    name: &str,
    redis_url: &str,
    prefix: &str,
    steps: &Steps,
    filters: usize,
    batch: Option<u64>,
    mut each: impl FnMut(&Step),
) -> Result<StepsReport> {
    if steps.hold_s == 0 {
        return Err(LoadError::Setup("--hold must be at least 1 s".into()));
    }
    let mut out = StepsReport::default();
    for rate in steps.rates() {
        let load = Load {
            rate,
            count: (rate * steps.hold_s as f64).round() as u64,
            filters,
            batch,
        };
        let outcome = run(name, redis_url, &format!("{prefix}-{rate:.0}"), &load)
            .await
            .map_err(|e| e.to_string());
        let shortfall = match &outcome {
            Ok(r) => shortfall(rate, r),
            Err(e) => Some(format!("the run failed: {e}")),
        };
        let step = Step {
            rate,
            load,
            outcome,
            shortfall,
        };
        each(&step);
        let stop = step.shortfall.is_some();
        out.steps.push(step);
        if stop {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2e::TailReport;
    use crate::Percentiles;

    fn report(publish_rate: f64, p95_us: u64, lost: u64) -> Report {
        Report {
            published: 100,
            publish_rate,
            filter_rate: publish_rate,
            e2e: Percentiles::default(),
            tail: TailReport {
                e2e_us: Percentiles {
                    p50: 1,
                    p95: p95_us,
                    p99: p95_us,
                    max: p95_us,
                },
                timed: 100,
                untimed: 0,
            },
            lost,
            duplicates: 0,
            pending: 0,
        }
    }

    /// `5000,5000,20000` is four rates; MAX need not be on the grid.
    #[test]
    fn steps_parse_into_rates() {
        let s: Steps = "5000,5000,20000".parse().unwrap();
        assert_eq!(s.rates(), vec![5000.0, 10000.0, 15000.0, 20000.0]);
        assert_eq!(s.hold_s, 60);
        let s: Steps = "1000, 2000, 6000".parse::<Steps>().unwrap().with_hold(5);
        assert_eq!((s.rates(), s.hold_s), (vec![1000.0, 3000.0, 5000.0], 5));
        assert!("5000,5000".parse::<Steps>().is_err());
        assert!("5000,0,10000".parse::<Steps>().is_err());
        assert!("5000,1000,100".parse::<Steps>().is_err());
    }

    /// A step holds with p95 under 50 ms, nothing lost and the publisher at 95 % or more.
    #[test]
    fn a_step_falls_short_on_latency_loss_or_a_slow_publisher() {
        assert_eq!(shortfall(1000.0, &report(960.0, 49_999, 0)), None);
        assert!(shortfall(1000.0, &report(1000.0, 50_000, 0))
            .unwrap()
            .contains("p95 50.000 ms"));
        assert!(shortfall(1000.0, &report(1000.0, 10, 1)).unwrap().contains("1 lost"));
        assert!(shortfall(1000.0, &report(949.0, 10, 0)).unwrap().contains("publisher"));
        let mut untimed = report(1000.0, 10, 0);
        untimed.tail.timed = 99;
        assert!(shortfall(1000.0, &untimed).unwrap().contains("99 of 100"));
    }

    /// The highest sustained rate is the last step that held.
    #[test]
    fn the_highest_sustained_rate_is_the_last_step_that_held() {
        let step = |rate: f64, short: Option<&str>| Step {
            rate,
            load: Load {
                rate,
                count: 1,
                filters: 1,
                batch: None,
            },
            outcome: Err("x".into()),
            shortfall: short.map(str::to_string),
        };
        let r = StepsReport {
            steps: vec![step(5000.0, None), step(10000.0, None), step(15000.0, Some("1 lost"))],
        };
        assert_eq!(r.highest_sustained(), Some(10000.0));
        assert!(r.line().starts_with("highest sustained rate: 10000/s"), "{}", r.line());
        assert!(r.line().contains("stopped at 15000/s: 1 lost"), "{}", r.line());
        assert_eq!(StepsReport::default().highest_sustained(), None);
    }
}
