//! Samples the target processes' CPU and memory from their Prometheus `/metrics`
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, the Prometheus client
//! conventions for process metrics).

use std::time::{Duration, Instant};

use serde::Serialize;

/// One process's figures at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessSample {
    /// CPU time used since start, seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident memory, bytes.
    pub rss_bytes: Option<f64>,
}

/// Reads the process metrics out of a Prometheus text exposition.
pub fn parse_process_metrics(text: &str) -> ProcessSample {
    let mut sample = ProcessSample::default();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let value = value.parse::<f64>().ok();
        match name {
            "process_cpu_seconds_total" => sample.cpu_seconds = value,
            "process_resident_memory_bytes" => sample.rss_bytes = value,
            _ => {}
        }
    }
    sample
}

/// Server figures over one sampling window, summed over every target process.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct ServerWindow {
    /// CPU use, percent of one core (200 = two cores busy).
    pub cpu_percent: Option<f64>,
    /// Resident memory, bytes.
    pub rss_bytes: Option<f64>,
}

/// Scrapes every metrics URL and turns CPU seconds into a rate.
pub struct ServerSampler {
    client: reqwest::Client,
    urls: Vec<String>,
    /// Bearer token for `/metrics`, if the targets want one.
    token: Option<String>,
    previous: Vec<Option<(Instant, f64)>>,
}

impl ServerSampler {
    /// A sampler of `urls` (may be empty: then every window is empty).
    pub fn new(urls: Vec<String>, token: Option<String>) -> Self {
        let previous = vec![None; urls.len()];
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_millis(900))
                .build()
                .expect("HTTP client builds"),
            urls,
            token,
            previous,
        }
    }

    /// Samples now. A target that does not answer leaves its share out.
    pub async fn sample(&mut self) -> ServerWindow {
        let mut window = ServerWindow::default();
        for (i, url) in self.urls.iter().enumerate() {
            let mut request = self.client.get(url);
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let Ok(response) = request.send().await else {
                continue;
            };
            let Ok(text) = response.text().await else { continue };
            let s = parse_process_metrics(&text);
            let now = Instant::now();
            if let Some(rss) = s.rss_bytes {
                *window.rss_bytes.get_or_insert(0.0) += rss;
            }
            if let Some(cpu) = s.cpu_seconds {
                if let Some((then, before)) = self.previous[i] {
                    let dt = now.duration_since(then).as_secs_f64();
                    if dt > 0.0 {
                        *window.cpu_percent.get_or_insert(0.0) += (cpu - before).max(0.0) / dt * 100.0;
                    }
                }
                self.previous[i] = Some((now, cpu));
            }
        }
        window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_process_metrics_and_ignores_the_rest() {
        let text = "# HELP process_cpu_seconds_total CPU\n# TYPE process_cpu_seconds_total counter\n\
                    process_cpu_seconds_total 12.5\nprocess_resident_memory_bytes 1048576\n\
                    fleetwire_ingest_requests_total{status=\"200\"} 3\n";
        let s = parse_process_metrics(text);
        assert_eq!((s.cpu_seconds, s.rss_bytes), (Some(12.5), Some(1_048_576.0)));
        assert_eq!(parse_process_metrics("garbage"), ProcessSample::default());
    }
}
