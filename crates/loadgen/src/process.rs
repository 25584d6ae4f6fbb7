//! What the load generator reads about a process from Linux's `/proc`: resident memory,
//! threads, CPU time and context switches, of the server (`--rss-pid`, `--cost-pid`) or of the
//! load generator itself.
//!
//! Readings are `None` where `/proc` is missing or unreadable (another OS, a process that
//! ended): the scenarios then leave the figure out. The parsing of each file is a function of
//! its text, tested here; the reading is the thin rest.

use std::collections::HashMap;
use std::time::Duration;

/// VmRSS (kB) of a process.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field(&text, "VmRSS:")
}

/// VmRSS (kB) and the number of threads of a process.
pub fn memory_and_threads(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some((
        status_field(&text, "VmRSS:")?,
        status_field(&text, "Threads:")?,
    ))
}

/// User + system time of a process so far (its exited threads included), from /proc/PID/stat.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    cpu_time_of_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU time and context switches a process has used so far.
#[derive(Debug, Clone)]
pub struct ProcessCost {
    pub cpu: Duration,
    /// Context switches so far, by thread id.
    switches: HashMap<u64, u64>,
}

impl ProcessCost {
    /// Context switches since `before` by the threads alive now. (Threads that ended meanwhile
    /// took their counts with them; a plain difference of totals could even come out negative.)
    pub fn switches_since(&self, before: &ProcessCost) -> u64 {
        self.switches
            .iter()
            .map(|(tid, &now)| now.saturating_sub(before.switches.get(tid).copied().unwrap_or(0)))
            .sum()
    }
}

/// Reads [`ProcessCost`] from /proc: user and system time of the whole process (its exited
/// threads included) from `/proc/PID/stat`, context switches summed over its live threads
/// (`/proc/PID/task/*/status`) by thread.
pub fn process_cost(pid: u32) -> Option<ProcessCost> {
    let cpu = cpu_time(pid)?;
    let mut switches = HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Some(tid) = task.file_name().to_str().and_then(|tid| tid.parse().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue; // The thread ended meanwhile.
        };
        switches.insert(tid, context_switches(&status));
    }
    Some(ProcessCost { cpu, switches })
}

/// The first number after `name` (e.g. `VmRSS:`) in the text of a `/proc/.../status` file.
fn status_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

/// Voluntary and involuntary context switches in the text of a `/proc/.../status` file.
fn context_switches(text: &str) -> u64 {
    text.lines()
        .filter_map(|line| {
            line.strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
        })
        .filter_map(|count| count.trim().parse::<u64>().ok())
        .sum()
}

/// utime + stime of the text of a `/proc/PID/stat` file.
fn cpu_time_of_stat(stat: &str) -> Option<Duration> {
    // The fields after the command name, which is in parentheses and may hold spaces: the
    // state is field 3 of the line, utime and stime fields 14 and 15, in USER_HZ (100 a second).
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tthrottle\nState:\tS (sleeping)\nVmPeak:\t  20000 kB\n\
                          VmRSS:\t    5120 kB\nThreads:\t17\nvoluntary_ctxt_switches:\t40\n\
                          nonvoluntary_ctxt_switches:\t2\n";

    #[test]
    fn status_fields() {
        assert_eq!(status_field(STATUS, "VmRSS:"), Some(5120));
        assert_eq!(status_field(STATUS, "Threads:"), Some(17));
        assert_eq!(status_field(STATUS, "VmSwap:"), None);
        assert_eq!(status_field(STATUS, "Name:"), None);
        assert_eq!(context_switches(STATUS), 42);
        assert_eq!(context_switches("Name:\tx\n"), 0);
    }

    #[test]
    fn cpu_time_of_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 1 2 3";
        assert_eq!(cpu_time_of_stat(stat), Some(Duration::from_millis(3250)));
        assert_eq!(cpu_time_of_stat("4242 (x) S 1 2"), None);
        assert_eq!(cpu_time_of_stat("no parenthesis"), None);
    }

    #[test]
    fn switches_count_only_threads_alive_now() {
        let cost = |cpu_ms, switches: &[(u64, u64)]| ProcessCost {
            cpu: Duration::from_millis(cpu_ms),
            switches: switches.iter().copied().collect(),
        };
        let before = cost(0, &[(1, 10), (2, 50), (3, 7)]);
        // Thread 3 ended; thread 4 is new; thread 2's count cannot go down.
        let after = cost(10, &[(1, 15), (2, 40), (4, 6)]);
        assert_eq!(after.switches_since(&before), 5 + 6);
    }

    #[test]
    fn this_process_can_be_read() {
        let pid = std::process::id();
        if std::path::Path::new("/proc/self/status").exists() {
            assert!(rss_kb(pid).is_some_and(|kb| kb > 0));
            assert!(memory_and_threads(pid).is_some_and(|(_, threads)| threads >= 1));
            assert!(cpu_time(pid).is_some());
            assert!(process_cost(pid).is_some());
        }
    }
}
