//! Resident memory of a process over a run, and whether it stayed flat: the soak's memory
//! criterion, computed on the samples taken after warm-up.

use std::time::Duration;

/// The resident set size of process `pid` (`None`: this process), in KiB.
pub fn rss_kib(pid: Option<u32>) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// The anonymous part of that RSS (heap, stacks), in KiB: without the pages of the executable
/// and libraries, which fill in as new code paths run.
pub fn anon_rss_kib(pid: Option<u32>) -> Option<u64> {
    status_kib(pid, "RssAnon:")
}

fn status_kib(pid: Option<u32>, field: &str) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    std::fs::read_to_string(path).ok().and_then(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    })
}

/// The processes `pid` started, from `/proc/<pid>/task/*/children`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|id| id.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The deepest process from `pid` down whose command line has the argument `word`: the
/// services' own process, not a wrapper that was given the same arguments.
pub fn find_in_tree(pid: u32, word: &str) -> Option<u32> {
    if let Some(found) = children(pid)
        .into_iter()
        .find_map(|child| find_in_tree(child, word))
    {
        return Some(found);
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == word.as_bytes())
        .then_some(pid)
}

/// The RSS of `pid` and of every process under it, in KiB: the services' process when it runs
/// under a wrapper such as `heaptrack`.
pub fn tree_rss_kib(pid: u32) -> Option<u64> {
    let own = rss_kib(Some(pid))?;
    Some(
        own + children(pid)
            .into_iter()
            .filter_map(tree_rss_kib)
            .sum::<u64>(),
    )
}

/// What the samples after warm-up say.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    /// Samples after warm-up.
    pub samples: usize,
    /// Median of the first and of the last third of those samples, KiB.
    pub first_third_kib: f64,
    pub last_third_kib: f64,
    /// (last − first) / first, in percent.
    pub growth_percent: f64,
    /// Least-squares slope over those samples, KiB per minute.
    pub slope_kib_per_min: f64,
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The trend of `(time, KiB)` samples taken at or after `warm_up`; `None` with fewer than six
/// such samples (two per third).
pub fn trend(samples: &[(Duration, u64)], warm_up: Duration) -> Option<Trend> {
    let kept: Vec<(f64, f64)> = samples
        .iter()
        .filter(|(at, _)| *at >= warm_up)
        .map(|(at, kib)| (at.as_secs_f64() / 60.0, *kib as f64))
        .collect();
    if kept.len() < 6 {
        return None;
    }
    let third = kept.len() / 3;
    let values: Vec<f64> = kept.iter().map(|(_, kib)| *kib).collect();
    let first = median(&values[..third]);
    let last = median(&values[values.len() - third..]);
    let n = kept.len() as f64;
    let mean_t = kept.iter().map(|(t, _)| t).sum::<f64>() / n;
    let mean_v = values.iter().sum::<f64>() / n;
    let covariance: f64 = kept.iter().map(|(t, v)| (t - mean_t) * (v - mean_v)).sum();
    let variance: f64 = kept.iter().map(|(t, _)| (t - mean_t).powi(2)).sum();
    Some(Trend {
        samples: kept.len(),
        first_third_kib: first,
        last_third_kib: last,
        growth_percent: if first > 0.0 {
            (last - first) / first * 100.0
        } else {
            0.0
        },
        slope_kib_per_min: if variance > 0.0 {
            covariance / variance
        } else {
            0.0
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_5s(values: &[u64]) -> Vec<(Duration, u64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (Duration::from_secs(5 * i as u64), *v))
            .collect()
    }

    #[test]
    fn a_steady_climb_has_its_slope_and_growth() {
        // 100 KiB more every 5 s = 1,200 KiB/min, from 10,000 KiB.
        let samples = every_5s(&(0..36).map(|i| 10_000 + 100 * i).collect::<Vec<_>>());
        let trend = trend(&samples, Duration::ZERO).unwrap();
        assert!((trend.slope_kib_per_min - 1200.0).abs() < 1e-6, "{trend:?}");
        assert_eq!(trend.samples, 36);
        // Thirds of 12: medians at i = 5.5 and 29.5.
        assert_eq!(trend.first_third_kib, 10_550.0);
        assert_eq!(trend.last_third_kib, 12_950.0);
        assert!(trend.growth_percent > 22.0);
    }

    #[test]
    fn warm_up_growth_is_left_out() {
        // Climbs for the first minute, then flat with noise.
        let mut values: Vec<u64> = (0..12).map(|i| 5_000 + 500 * i).collect();
        values.extend((0..24).map(|i| 11_000 + (i % 3) * 10));
        let samples = every_5s(&values);
        let whole = trend(&samples, Duration::ZERO).unwrap();
        let after = trend(&samples, Duration::from_secs(60)).unwrap();
        assert!(whole.growth_percent > 20.0, "{whole:?}");
        assert!(after.growth_percent.abs() < 1.0, "{after:?}");
        assert!(after.slope_kib_per_min.abs() < 10.0, "{after:?}");
        assert_eq!(after.samples, 24);
    }

    #[test]
    fn too_few_samples_give_no_trend() {
        assert_eq!(trend(&every_5s(&[1, 2, 3, 4, 5]), Duration::ZERO), None);
        assert_eq!(trend(&every_5s(&[1; 20]), Duration::from_secs(80)), None);
    }

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(rss_kib(None).is_some_and(|kib| kib > 0));
        assert!(anon_rss_kib(None).is_some_and(|kib| kib > 0));
        assert!(rss_kib(Some(std::process::id())).is_some_and(|kib| kib > 0));
    }

    #[test]
    fn a_tree_is_its_process_and_its_children() {
        // Sleeping processes: their sizes hold still while they are read (this test process's
        // own would not, with other tests allocating beside it).
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .unwrap();
        let pid = shell.id();
        // The shell's child counts once it has become `sleep`: before its exec it is a copy of
        // the shell whose pages are still being shared and replaced.
        let is_sleep = |child: &u32| {
            std::fs::read_to_string(format!("/proc/{child}/comm"))
                .is_ok_and(|comm| comm.trim() == "sleep")
        };
        let mut child = None;
        for _ in 0..250 {
            child = children(pid).into_iter().find(is_sleep);
            if child.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let child = child.expect("sh started sleep");
        // And the shell has reached its `wait`: the pid it waits on exists before it gets there.
        std::thread::sleep(Duration::from_millis(100));
        let (own, theirs) = (rss_kib(Some(pid)).unwrap(), rss_kib(Some(child)).unwrap());
        let anon = anon_rss_kib(Some(pid)).unwrap();
        let tree = tree_rss_kib(pid);
        std::process::Command::new("kill")
            .arg(child.to_string())
            .status()
            .unwrap();
        shell.wait().unwrap();
        assert!(anon > 0 && anon <= own, "{anon} KiB of {own} KiB");
        assert_eq!(tree, Some(own + theirs));
    }

    #[test]
    fn the_deepest_process_with_the_argument_is_found() {
        let mut outer = std::process::Command::new("sh")
            .args([
                "-c",
                "sh -c 'sleep 30; :' --marker-arg; :",
                "outer",
                "--marker-arg",
            ])
            .spawn()
            .unwrap();
        let pid = outer.id();
        let mut found = None;
        for _ in 0..100 {
            found = find_in_tree(pid, "--marker-arg");
            if found.is_some_and(|f| f != pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let found = found.unwrap();
        std::process::Command::new("kill")
            .arg(found.to_string())
            .status()
            .unwrap();
        outer.kill().unwrap();
        outer.wait().unwrap();
        assert_ne!(found, pid, "the wrapper was found, not its child");
        assert_eq!(find_in_tree(pid, "--absent"), None);
    }
}
