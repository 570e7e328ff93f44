//! The one table of results: rows, the machine they were taken on, and the block of
//! `docs/performance.md` between the `bench:start`/`bench:end` markers.

use std::fmt::Write as _;

/// The page that holds the table, relative to the workspace root.
pub const DOCUMENT: &str = "docs/performance.md";
pub const START_MARKER: &str = "<!-- bench:start -->";
pub const END_MARKER: &str = "<!-- bench:end -->";

/// Whether a row's target was met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// No target on this row, or the figure could not be measured (the reason is in the row).
    NotApplicable,
}

impl Verdict {
    pub fn from_bool(met: bool) -> Self {
        if met { Self::Met } else { Self::Missed }
    }

    /// Met only when every part is met; missed when any part is missed.
    pub fn all(parts: &[Verdict]) -> Self {
        if parts.contains(&Self::Missed) {
            Self::Missed
        } else if parts.is_empty() || parts.contains(&Self::NotApplicable) {
            Self::NotApplicable
        } else {
            Self::Met
        }
    }

    fn render(&self) -> &'static str {
        match self {
            Self::Met => "yes",
            Self::Missed => "**no**",
            Self::NotApplicable => "–",
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub ours: String,
    pub peer: String,
    pub ratio: String,
    pub target: String,
    pub met: Verdict,
}

impl Row {
    /// A row for a scenario that could not run (the reason is shown in place of the figure).
    pub fn failed(scenario: &str, target: &str, reason: &str) -> Self {
        Self {
            scenario: scenario.to_owned(),
            ours: format!("not measured: {reason}"),
            peer: String::new(),
            ratio: String::new(),
            target: target.to_owned(),
            met: Verdict::NotApplicable,
        }
    }
}

/// What the figures were measured on.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cores: usize,
    pub memory_mib: u64,
    pub cpu_model: String,
    /// 1-minute load average when the run started: > 0.5 × cores means the figures are noisy.
    pub load_average: f64,
    pub date: String,
}

impl Machine {
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_mib: parse_meminfo_total_mib(&meminfo).unwrap_or(0),
            cpu_model: parse_cpu_model(&cpuinfo).unwrap_or_else(|| "unknown CPU".to_owned()),
            load_average: loadavg
                .split_whitespace()
                .next()
                .and_then(|l| l.parse().ok())
                .unwrap_or(f64::NAN),
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} cores ({}), {:.1} GiB RAM, load average {:.2} at start, {}",
            self.cores,
            self.cpu_model,
            self.memory_mib as f64 / 1024.0,
            self.load_average,
            self.date
        )
    }
}

pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

pub fn parse_meminfo_total_mib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb / 1024)
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The markdown table of `rows`.
pub fn render_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | ours: median [min–max] | peer / limit | ratio | target | met? |\n|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            cell(&row.scenario),
            cell(&row.ours),
            cell(&row.peer),
            cell(&row.ratio),
            cell(&row.target),
            row.met.render()
        );
    }
    out
}

/// The block `docs/performance.md` holds between its markers: machine, command, table.
pub fn render_block(machine: &Machine, runs: usize, command: &str, rows: &[Row]) -> String {
    format!(
        "Measured with `{command}` on {}; {runs} runs per scenario, median [min–max]; each peer \
         figure measured in the same run.\n\n{}",
        machine.describe(),
        render_table(rows)
    )
}

#[derive(Debug)]
pub enum MarkerError {
    Missing,
    OutOfOrder,
}

impl std::error::Error for MarkerError {}

impl std::fmt::Display for MarkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => write!(
                f,
                "{DOCUMENT} has no `{START_MARKER}` … `{END_MARKER}` markers"
            ),
            Self::OutOfOrder => write!(
                f,
                "in {DOCUMENT}, `{END_MARKER}` comes before `{START_MARKER}`"
            ),
        }
    }
}

/// `page` with everything between the markers replaced by `block` (markers kept).
pub fn rewrite_between_markers(page: &str, block: &str) -> Result<String, MarkerError> {
    let start = page.find(START_MARKER).ok_or(MarkerError::Missing)?;
    let end = page.find(END_MARKER).ok_or(MarkerError::Missing)?;
    if end < start {
        return Err(MarkerError::OutOfOrder);
    }
    let before = &page[..start + START_MARKER.len()];
    let after = &page[end..];
    Ok(format!("{before}\n{}\n{after}", block.trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scenario: &str, met: Verdict) -> Row {
        Row {
            scenario: scenario.to_owned(),
            ours: "1,000 [900–1,100] req/s".to_owned(),
            peer: "pgbench | 2,000".to_owned(),
            ratio: "50 %".to_owned(),
            target: "≥ 50 %".to_owned(),
            met,
        }
    }

    #[test]
    fn the_table_has_one_line_per_row_and_escapes_pipes() {
        let table = render_table(&[row("join c=64", Verdict::Met), row("x", Verdict::Missed)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("| scenario |"));
        assert_eq!(
            lines[2],
            "| join c=64 | 1,000 [900–1,100] req/s | pgbench \\| 2,000 | 50 % | ≥ 50 % | yes |"
        );
        assert!(lines[3].ends_with("| **no** |"));
        // Every line has the same number of (unescaped) cells.
        for line in &lines {
            assert_eq!(line.replace("\\|", "").matches('|').count(), 7, "{line}");
        }
    }

    #[test]
    fn verdicts_combine() {
        use Verdict::*;
        assert_eq!(Verdict::all(&[Met, Met]), Met);
        assert_eq!(Verdict::all(&[Met, Missed]), Missed);
        assert_eq!(Verdict::all(&[Met, NotApplicable]), NotApplicable);
        assert_eq!(Verdict::all(&[NotApplicable, Missed]), Missed);
        assert_eq!(Verdict::all(&[]), NotApplicable);
    }

    #[test]
    fn the_block_is_replaced_and_the_rest_kept() {
        let readme = format!(
            "# T\n\n## Performance\n\n{START_MARKER}\nold table\n| a |\n{END_MARKER}\n\nprose after\n"
        );
        let new = rewrite_between_markers(&readme, "new table\n").unwrap();
        assert_eq!(
            new,
            format!(
                "# T\n\n## Performance\n\n{START_MARKER}\nnew table\n{END_MARKER}\n\nprose after\n"
            )
        );
        // Idempotent.
        assert_eq!(rewrite_between_markers(&new, "new table").unwrap(), new);
    }

    #[test]
    fn missing_or_swapped_markers_are_refused() {
        assert!(matches!(
            rewrite_between_markers("no markers", "x"),
            Err(MarkerError::Missing)
        ));
        assert!(matches!(
            rewrite_between_markers(&format!("{START_MARKER} only"), "x"),
            Err(MarkerError::Missing)
        ));
        assert!(matches!(
            rewrite_between_markers(&format!("{END_MARKER}\n{START_MARKER}"), "x"),
            Err(MarkerError::OutOfOrder)
        ));
    }

    #[test]
    fn machine_facts_are_parsed_from_proc() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(
            parse_cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
        assert_eq!(
            parse_meminfo_total_mib("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24000)
        );
        assert_eq!(parse_meminfo_total_mib("nothing"), None);
    }
}
