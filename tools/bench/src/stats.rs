//! Medians and spreads of repeated runs, and how figures are written in the table.

/// The median and the range of one figure over several runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Spread {
    /// `None` when no run produced the figure (NaN values are runs that failed to measure it).
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            runs: n,
        })
    }

    /// The spread of `values` rendered, or `n/a` when no run produced it.
    pub fn render_of(values: &[f64], decimals: usize) -> String {
        Self::of(values).map_or("n/a".to_owned(), |spread| spread.render(decimals))
    }

    /// `median [min–max]`, with `decimals` digits (the range is left out after a single run).
    pub fn render(&self, decimals: usize) -> String {
        if self.runs < 2 {
            return number(self.median, decimals);
        }
        format!(
            "{} [{}–{}]",
            number(self.median, decimals),
            number(self.min, decimals),
            number(self.max, decimals)
        )
    }
}

/// A figure with thousands separators: `12,345`, `3.25`.
pub fn number(value: f64, decimals: usize) -> String {
    if !value.is_finite() {
        return "n/a".to_owned();
    }
    let text = format!("{:.*}", decimals, value.abs());
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w.to_owned(), Some(f.to_owned())),
        None => (text.clone(), None),
    };
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if value < 0.0 && text.chars().any(|c| c != '0' && c != '.') {
        "-"
    } else {
        ""
    };
    match fraction {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// Decimals that keep about three significant digits for small figures (latencies in ms).
pub fn decimals_for(value: f64) -> usize {
    let v = value.abs();
    if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    }
}

/// Per-run ratios `ours[i] / peer[i]`: each run measures both back to back, so on a noisy
/// machine the ratios are steadier than the ratio of the medians.
pub fn ratios(ours: &[f64], peer: &[f64]) -> Vec<f64> {
    ours.iter()
        .zip(peer)
        .map(|(o, p)| if *p > 0.0 { o / p } else { f64::NAN })
        .collect()
}

/// The spread of the per-run `ours / peer` ratios, in percent: on a noisy machine the median of
/// per-run ratios is steadier than the ratio of medians.
pub fn percent_of(ours: &[f64], peer: &[f64]) -> Option<Spread> {
    let percents: Vec<f64> = ratios(ours, peer).iter().map(|r| r * 100.0).collect();
    Spread::of(&percents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts_and_the_range() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.runs), (2.0, 1.0, 3.0, 3));
        let s = Spread::of(&[4.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 10.0));
    }

    #[test]
    fn failed_runs_are_left_out_and_none_means_not_measured() {
        let s = Spread::of(&[f64::NAN, 5.0, 7.0]).unwrap();
        assert_eq!((s.median, s.runs), (6.0, 2));
        assert!(Spread::of(&[]).is_none());
        assert!(Spread::of(&[f64::NAN]).is_none());
    }

    #[test]
    fn rendering_groups_thousands_and_shows_the_spread() {
        assert_eq!(number(1_234_567.4, 0), "1,234,567");
        assert_eq!(number(999.0, 0), "999");
        assert_eq!(number(12.345, 2), "12.35");
        assert_eq!(number(-1500.0, 0), "-1,500");
        assert_eq!(number(f64::NAN, 1), "n/a");
        let s = Spread::of(&[1200.0, 1000.0, 1500.0]).unwrap();
        assert_eq!(s.render(0), "1,200 [1,000–1,500]");
        assert_eq!(Spread::of(&[2.5]).unwrap().render(1), "2.5");
    }

    #[test]
    fn ratios_are_per_run() {
        let r = ratios(&[50.0, 90.0], &[100.0, 0.0]);
        assert_eq!(r[0], 0.5);
        assert!(r[1].is_nan());
        assert_eq!(decimals_for(250.0), 0);
        assert_eq!(decimals_for(25.0), 1);
        assert_eq!(decimals_for(2.5), 2);
    }
}
