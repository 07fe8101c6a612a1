//! The report (markdown sections and goals), its number formats and the
//! statistics behind them.

/// Nearest-rank percentile of a sorted slice.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median of unsorted values (NaN when there are none).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The largest of the values (NaN when there are none).
pub fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}

/// One goal and whether the run met it.
#[derive(Debug, Clone)]
pub struct Goal {
    /// What is asked.
    pub what: String,
    /// What was measured.
    pub measured: String,
    /// Met or not; `None` when not measured in this run.
    pub pass: Option<bool>,
}

/// The report: markdown sections and goals.
#[derive(Debug, Default)]
pub struct Report {
    /// Sections in order.
    pub sections: Vec<String>,
    /// Goals in order.
    pub goals: Vec<Goal>,
}

impl Report {
    /// Adds a goal.
    pub fn goal(&mut self, what: &str, measured: String, pass: Option<bool>) {
        self.goals.push(Goal {
            what: what.to_string(),
            measured,
            pass,
        });
    }

    /// The whole report: every section, then the goals with PASS/FAIL.
    pub fn render(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .goals
            .iter()
            .map(|g| {
                let verdict = match g.pass {
                    Some(true) => "PASS",
                    Some(false) => "**FAIL**",
                    None => "not measured",
                };
                vec![g.what.clone(), g.measured.clone(), verdict.to_string()]
            })
            .collect();
        let mut out: String = self.sections.iter().map(|s| format!("{s}\n")).collect();
        out.push_str("## Goals\n\n");
        out.push_str(&table(&["goal", "measured", "result"], &rows));
        out
    }
}

/// A markdown table: text columns left-aligned, figures right-aligned.
pub fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n|", head.join(" | "));
    for i in 0..head.len() {
        let text = rows.first().and_then(|r| r.get(i)).is_none_or(|c| {
            c.chars()
                .next()
                .is_some_and(|ch| ch.is_alphabetic() || ch == '`' || ch == '*')
        });
        s.push_str(if i == 0 || text { "---|" } else { "---:|" });
    }
    s.push('\n');
    for r in rows {
        s.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    s
}

/// One figure of a table with a column per fleet size: its text, and its
/// value when the table compares it across sizes.
pub type Figure = (String, Option<f64>);

/// A table with a column per fleet size: one row per label, filled from each
/// size's figures in the same order; with `compare`, a last column gives
/// largest ÷ smallest size of the figures that have a value.
pub fn size_table(labels: &[&str], runs: &[(usize, Vec<Figure>)], compare: bool) -> String {
    let mut head = vec![String::new()];
    head.extend(
        runs.iter()
            .map(|(n, _)| format!("{} nodes", int(*n as f64))),
    );
    head.extend(compare.then(|| "ratio (largest ÷ smallest)".to_string()));
    let rows: Vec<Vec<String>> = (0..labels.len())
        .map(|k| {
            let mut row = vec![labels[k].to_string()];
            row.extend(
                runs.iter()
                    .map(|(_, f)| f.get(k).map_or("–".into(), |c| c.0.clone())),
            );
            let value = |r: Option<&(usize, Vec<Figure>)>| r.and_then(|r| r.1.get(k)?.1);
            if compare {
                row.push(match (value(runs.first()), value(runs.last())) {
                    (Some(a), Some(b)) if runs.len() > 1 => ratio(b, a),
                    (Some(_), Some(_)) => "–".into(),
                    _ => String::new(),
                });
            }
            row
        })
        .collect();
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    table(&head, &rows)
}

/// `12,345`.
pub fn int(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let n = v.round() as i64;
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Milliseconds with sensible precision.
pub fn ms(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v < 10.0 {
        format!("{v:.2} ms")
    } else if v < 100.0 {
        format!("{v:.1} ms")
    } else {
        format!("{} ms", int(v))
    }
}

/// `a ÷ b` as `0.87×`.
pub fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=50).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(25.0));
        assert_eq!(percentile(&v, 99.0), Some(50.0));
        assert_eq!(median(&[3.0, 1.0, 2.0, 4.0]), 2.5);
        assert_eq!(max(&[3.0, 1.0]), 3.0);
    }

    #[test]
    fn formats() {
        assert_eq!(int(1234567.4), "1,234,567");
        assert_eq!(int(999.0), "999");
        assert_eq!(ratio(1.0, 2.0), "0.50×");
        let runs = [
            (10, vec![("a".into(), Some(1.0)), ("x".into(), None)]),
            (10_000, vec![("b".into(), Some(4.0)), ("y".into(), None)]),
        ];
        assert_eq!(
            size_table(&["one", "two"], &runs, true),
            "|  | 10 nodes | 10,000 nodes | ratio (largest ÷ smallest) |\n|---|---|---|---:|\n\
| one | a | b | 4.00× |\n| two | x | y |  |\n"
        );
        assert_eq!(
            table(&["a", "b"], &[vec!["x".into(), "1".into()]]),
            "| a | b |\n|---|---:|\n| x | 1 |\n"
        );
    }
}
