//! The headline figures of a run compared with the last accepted ones, kept
//! in tests/bench-baseline.json (as Firecracker keeps boot-time baselines):
//! every run prints the difference, and `SKIFF_BENCH_SAVE_BASELINE=1`
//! writes the run's figures as the new baseline once a change is accepted.

use serde_json::{json, Map, Value};

/// Which way a figure improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// One headline figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Its name in the baseline file.
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub better: Better,
    pub value: f64,
}

/// One row of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Compared {
    pub label: &'static str,
    pub unit: &'static str,
    pub now: f64,
    /// The baseline's value, if it has this figure.
    pub then: Option<f64>,
    /// True when the change goes the figure's good way (None: no change or no baseline).
    pub improved: Option<bool>,
}

/// The figures of `figures` side by side with the baseline's.
pub fn compare(figures: &[Figure], baseline: &Value) -> Vec<Compared> {
    figures
        .iter()
        .map(|f| {
            let then = baseline.get("figures").and_then(|m| m.get(f.key)).and_then(Value::as_f64);
            let improved = then.filter(|t| *t != f.value).map(|t| match f.better {
                Better::Lower => f.value < t,
                Better::Higher => f.value > t,
            });
            Compared { label: f.label, unit: f.unit, now: f.value, then, improved }
        })
        .collect()
}

/// The text of one comparison row's value: `now (then → now, ±d, ±p%)`.
pub fn describe(c: &Compared) -> String {
    let now = format!("{} {}", fmt(c.now), c.unit);
    let Some(then) = c.then else { return format!("{now} (not in the baseline)") };
    let diff = c.now - then;
    let pct = if then != 0.0 { format!(", {:+.1}%", 100.0 * diff / then) } else { String::new() };
    let verdict = match c.improved {
        Some(true) => "better",
        Some(false) => "worse",
        None => "same",
    };
    format!("{now} (baseline {}, {}{} {}{pct}) {verdict}", fmt(then), if diff >= 0.0 { "+" } else { "" }, fmt(diff), c.unit)
}

fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 { format!("{v:.0}") } else { format!("{v:.2}") }
}

/// The baseline document for `figures`, with a note on where they were measured.
pub fn document(figures: &[Figure], note: &str) -> Value {
    let map: Map<String, Value> = figures.iter().map(|f| (f.key.to_string(), json!(f.value))).collect();
    let units: Map<String, Value> = figures.iter().map(|f| (f.key.to_string(), json!(f.unit))).collect();
    json!({ "note": note, "figures": map, "units": units })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(key: &'static str, better: Better, value: f64) -> Figure {
        Figure { key, label: key, unit: "s", better, value }
    }

    #[test]
    fn lower_and_higher_figures_improve_their_own_way() {
        let base = json!({ "figures": { "boot": 6.0, "speed": 10.0, "same": 1.0 } });
        let got = compare(&[fig("boot", Better::Lower, 5.0), fig("speed", Better::Higher, 9.0), fig("same", Better::Lower, 1.0), fig("new", Better::Lower, 3.0)], &base);
        assert_eq!(got.iter().map(|c| c.improved).collect::<Vec<_>>(), vec![Some(true), Some(false), None, None]);
        assert_eq!(got[3].then, None);
        assert_eq!(got[0].then, Some(6.0));
    }

    #[test]
    fn descriptions_show_both_values_and_the_change() {
        let base = json!({ "figures": { "boot": 6.0 } });
        let c = &compare(&[fig("boot", Better::Lower, 4.5)], &base)[0];
        assert_eq!(describe(c), "4.50 s (baseline 6.00, -1.50 s, -25.0%) better");
        let c = &compare(&[fig("boot", Better::Lower, 4.5)], &json!({}))[0];
        assert_eq!(describe(c), "4.50 s (not in the baseline)");
    }

    #[test]
    fn a_written_baseline_compares_equal_to_itself() {
        let figs = [fig("boot", Better::Lower, 4.5), fig("speed", Better::Higher, 30.0)];
        let doc = document(&figs, "here");
        assert!(compare(&figs, &doc).iter().all(|c| c.then == Some(c.now) && c.improved.is_none()));
        assert_eq!(doc["note"], "here");
    }
}
