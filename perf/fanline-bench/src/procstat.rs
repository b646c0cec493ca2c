//! Process statistics from procfs: CPU time (utime + stime from `/proc/PID/stat`) and resident
//! memory (`VmRSS` from `/proc/PID/status`). Linux only; readers return `None` elsewhere or
//! when the process is gone.

use std::fs;

/// CPU seconds (user + system) the process has used so far.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu_ticks(&stat).map(|t| t as f64 / clock_ticks_per_sec())
}

/// Resident set size in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_rss(&status)
}

/// utime + stime in clock ticks. Fields 14 and 15 of stat(5), counted after the `comm` field,
/// which is parenthesised and may itself hold spaces and parentheses: split at the last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut f = after.split_whitespace();
    // After ")": field 3 (state) is index 0, so utime (14) is index 11, stime (15) index 12.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a configuration value; it has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let s = "42 (a b) c)) S 1 2 3 4 5 6 7 8 9 10 111 222 0 0 20 0 1 0 5 6 7";
        assert_eq!(parse_stat_cpu_ticks(s), Some(333));
    }

    #[test]
    fn parses_status_rss() {
        let s = "Name:\tx\nVmPeak:\t 10 kB\nVmRSS:\t  5120 kB\n";
        assert_eq!(parse_status_rss(s), Some(5120));
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 0);
        assert!(cpu_secs(me).is_some());
    }
}
