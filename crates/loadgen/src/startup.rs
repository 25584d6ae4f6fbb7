//! The `startup` scenario: how long the server binary takes from being spawned to its first
//! 200 from `/health`, `--repeat` times. The one scenario that starts a server; it needs no
//! `--url`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::args::{Options, Scenario};
use crate::http::{Client, Target};
use crate::report::ResultLine;
use crate::stats::{Stats, nanos};

/// Spawns the server `--repeat` times; measures spawn → first 200 from `/health`.
pub fn startup(options: &Options) -> Result<(), String> {
    let binary = options
        .server_bin
        .as_deref()
        .ok_or("missing --server-bin")?;
    let mut samples = Vec::with_capacity(options.repeat);
    for _ in 0..options.repeat {
        let mut command = Command::new(binary);
        if let Some(config) = &options.config {
            command.arg("--configuration").arg(config);
        }
        command
            .args(["--address", "127.0.0.1", "--port", "0"])
            .env_remove("THROTTLE_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let spawned = Instant::now();
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {binary}: {e}"))?;
        let stderr = child.stderr.take().expect("piped");
        let measured = (|| -> Result<Duration, String> {
            let mut lines = BufReader::new(stderr).lines();
            let mut seen = VecDeque::new();
            let url = loop {
                let line = lines
                    .next()
                    .ok_or_else(|| {
                        format!(
                            "{binary} exited without a 'Listening on' line: {:?}",
                            seen.iter().collect::<Vec<_>>()
                        )
                    })?
                    .map_err(|e| e.to_string())?;
                if let Some((_, url)) = line.split_once("Listening on ") {
                    break url.trim().to_owned();
                }
                seen.push_back(line);
                if seen.len() > 5 {
                    seen.pop_front();
                }
            };
            let target = Target::parse(&url)?;
            let give_up = spawned + Duration::from_secs(10);
            loop {
                let mut client = Client::new(&target);
                if let Ok(response) = client.request("GET", "/health", "")
                    && response.status == 200
                {
                    return Ok(spawned.elapsed());
                }
                if Instant::now() > give_up {
                    return Err("no 200 from /health within 10 s".into());
                }
                thread::sleep(Duration::from_micros(100));
            }
        })();
        let _ = child.kill();
        let _ = child.wait();
        samples.push(nanos(measured?));
    }
    let stats = Stats::new(samples);
    println!(
        "startup of {binary} over {} starts: spawn to the first 200 from /health",
        stats.count()
    );
    println!(
        "  p50 {:.3} ms, max {:.3} ms",
        stats.ms(0.5),
        stats.max_ms()
    );
    let mut result = ResultLine::new(Scenario::Startup);
    result
        .add("samples", stats.count())
        .ms("p50_ms", stats.ms(0.5))
        .ms("max_ms", stats.max_ms());
    println!("{}", result.as_str());
    Ok(())
}
