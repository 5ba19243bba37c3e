//! What the kernel says about a process: CPU time and resident memory (Linux `/proc`).
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Clock ticks per second for `/proc/*/stat` (`getconf CLK_TCK`; 100 if unavailable).
pub fn clk_tck() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t: &u64| t > 0)
        .unwrap_or(100)
}

/// `who` is a pid or `"self"`.
fn stat_path(who: &str, file: &str) -> String {
    format!("/proc/{who}/{file}")
}

/// utime + stime in clock ticks.
pub fn cpu_ticks(who: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(stat_path(who, "stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')' the first field is `state` (field 3); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS in kB.
pub fn rss_kb(who: &str) -> Option<u64> {
    let status = std::fs::read_to_string(stat_path(who, "status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Thread count.
pub fn threads(who: &str) -> Option<u64> {
    let status = std::fs::read_to_string(stat_path(who, "status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

/// CPU seconds of `who` so far.
pub fn cpu_seconds(who: &str, tck: u64) -> Option<f64> {
    cpu_ticks(who).map(|t| t as f64 / tck as f64)
}

/// The machine, for the report.
pub fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: Option<u64> = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.trim().to_owned());
    serde_json::json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "mem_total_kb": mem_kb,
        "loadavg_at_start": load,
    })
}

/// Samples a process's RSS every 100 ms and keeps the peak, until dropped.
pub struct RssPeak {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssPeak {
    pub fn start(pid: u32) -> RssPeak {
        let peak = Arc::new(AtomicU64::new(rss_kb(&pid.to_string()).unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            let who = pid.to_string();
            // Bounded: stops when asked, when the process is gone, or after a day.
            for _ in 0..(24 * 3600 * 10) {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                match rss_kb(&who) {
                    Some(kb) => {
                        p.fetch_max(kb, Ordering::Relaxed);
                    }
                    None => break,
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        RssPeak { peak, stop }
    }

    pub fn peak_kb(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssPeak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
