//! Live progress: an indicatif status line on a terminal, a plain line every 5 s
//! otherwise (CI logs).

use std::io::IsTerminal as _;
use std::sync::atomic::Ordering;

use indicatif::{ProgressBar, ProgressStyle};

use super::live::Live;
use crate::report::Sample;

/// Where progress goes.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar over `load_secs` on a terminal, plain lines otherwise.
    pub fn new(load_secs: u64) -> Self {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::new(load_secs);
            bar.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} s  {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar
        });
        Self { bar }
    }

    /// Shows one second's figures.
    pub fn update(&mut self, s: &Sample, live: &Live) {
        let line = format!(
            "offered {:.0}/s accepted {:.0}/s events {:.0}/s | ack p99 {:.1} ms | e2e p50 {:.1} p99 {:.1} ms | errors {} dup {} resets {} | subs {}{}",
            s.offered_rps,
            s.accepted_rps,
            s.events_ps,
            s.ack.p99,
            s.e2e.p50,
            s.e2e.p99,
            live.errors.load(Ordering::Relaxed),
            live.duplicates.load(Ordering::Relaxed),
            live.resets.load(Ordering::Relaxed),
            s.subscribers,
            s.cpu_percent
                .map_or(String::new(), |c| format!(" | server cpu {c:.0}%")),
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(s.t as u64);
                bar.set_message(line);
            }
            None if (s.t as u64).is_multiple_of(5) => println!("t={:>5.0}s {line}", s.t),
            None => {}
        }
    }

    /// Prints a line above the bar (or plainly).
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => println!("{text}"),
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
