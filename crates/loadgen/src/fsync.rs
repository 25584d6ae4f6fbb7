//! The `fsync` scenario: how long this machine's disk takes to make a small append durable,
//! `--repeat` times in a file under `--dir` (then removed). A cluster member syncs its log
//! before it answers a grant, so this is the floor under a commit's latency there; the figure
//! is the disk's, measured from outside the server.
//!
//! Not the server's own fsync time (its log writes more per sync, and groups requests), and it
//! needs no server.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use crate::args::{Options, Scenario};
use crate::report::ResultLine;
use crate::stats::{Stats, nanos};

/// The size of one append: about one small log entry.
const RECORD: usize = 128;

/// Appends `--repeat` records, each followed by `sync_data`; reports the syncs' latencies.
pub fn fsync(options: &Options) -> Result<(), String> {
    let dir = options.dir.as_deref().ok_or("missing --dir")?;
    let path = Path::new(dir).join(format!("loadgen-fsync-{}.probe", std::process::id()));
    let outcome = probe(&path, options.repeat);
    let _ = std::fs::remove_file(&path);
    let stats = Stats::new(outcome?);
    println!(
        "fsync in {dir}: {} appends of {RECORD} bytes, each followed by fdatasync",
        stats.count()
    );
    println!(
        "  p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        stats.ms(0.5),
        stats.ms(0.99),
        stats.max_ms()
    );
    let mut result = ResultLine::new(Scenario::Fsync);
    result
        .add("samples", stats.count())
        .ms("p50_ms", stats.ms(0.5))
        .ms("p99_ms", stats.ms(0.99))
        .ms("max_ms", stats.max_ms())
        .add("errors", 0);
    println!("{}", result.as_str());
    Ok(())
}

/// The latencies in nanoseconds of `repeat` append + `sync_data` pairs on a new file at `path`.
fn probe(path: &Path, repeat: usize) -> Result<Vec<i64>, String> {
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let record = [b'x'; RECORD];
    let mut samples = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let started = Instant::now();
        file.write_all(&record)
            .and_then(|()| file.sync_data())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        samples.push(nanos(started.elapsed()));
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_appends_and_syncs_each_record() {
        let dir = std::env::temp_dir().join(format!("loadgen-fsync-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.join("probe");
        let samples = probe(&path, 3).expect("the probe runs");
        assert_eq!(samples.len(), 3);
        assert!(samples.iter().all(|&ns| ns >= 0));
        assert_eq!(
            std::fs::metadata(&path).expect("written").len(),
            3 * RECORD as u64
        );
        // An existing file is never overwritten.
        assert!(probe(&path, 1).is_err_and(|e| e.starts_with("cannot create")));
        std::fs::remove_dir_all(&dir).expect("removed");
    }
}
