//! A self-contained HTML page of a report: summary tables and line charts over time,
//! drawn as inline SVG by hand. (plotters would add a font stack and about a dozen
//! crates for what is a few polylines with axes; the page must open offline anyway.)

use std::fmt::Write as _;

use super::{Report, Sample};

const W: f64 = 860.0;
const H: f64 = 220.0;
const LEFT: f64 = 70.0;
const BOTTOM: f64 = 30.0;
const TOP: f64 = 24.0;

/// One line of a chart.
struct Line<'a> {
    label: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

/// Renders the page.
pub fn render(r: &Report) -> String {
    let mut page = String::new();
    let verdict = if r.passed { "PASSED" } else { "FAILED" };
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{name} — fleetwire load test</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:920px}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
         th{{text-align:left}}.pass{{color:#186a18}}.fail{{color:#b00020;font-weight:bold}}</style></head><body>\
         <h1>{name}: <span class=\"{cls}\">{verdict}</span></h1><p>{desc}</p><p>Started {started}, load {secs:.0} s, vehicles <code>{prefix}*</code>.</p>",
        name = esc(&r.scenario.name),
        cls = if r.passed { "pass" } else { "fail" },
        desc = esc(&r.scenario.description),
        started = esc(&r.started_at),
        secs = r.load_secs,
        prefix = esc(&r.vehicle_prefix),
    );
    page.push_str("<h2>Checks</h2><table><tr><th>check</th><th>limit</th><th>actual</th><th></th></tr>");
    for c in &r.checks {
        let _ = write!(
            page,
            "<tr><th>{}</th><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
            esc(&c.name),
            num(c.limit),
            num(c.actual),
            if c.pass { "pass" } else { "fail" },
            if c.pass { "pass" } else { "FAIL" }
        );
    }
    page.push_str("</table><h2>Summary</h2><table>");
    let t = &r.throughput;
    let d = &r.delivery;
    let mut rows: Vec<(&str, String)> = vec![
        (
            "records accepted",
            format!("{} ({:.0}/s)", t.accepted_records, t.accepted_per_sec),
        ),
        (
            "subscriber events",
            format!("{} ({:.0}/s)", t.events, t.events_per_sec),
        ),
        ("ack p50 / p95 / p99 / max ms", pct(&r.ack_ms)),
        (
            "e2e p50 / p95 / p99 / max ms",
            if r.e2e_measured {
                pct(&r.e2e_ms)
            } else {
                "not measured".into()
            },
        ),
        (
            "lost (never applied / never delivered)",
            format!("{} ({} / {})", r.lost, d.lost_before_apply, d.lost_tail),
        ),
        (
            "duplicates / double applied",
            format!("{} / {}", d.duplicates, d.double_applied),
        ),
        (
            "superseded (applied, delivered as a newer state)",
            d.superseded.to_string(),
        ),
        (
            "resets / skipped after reset",
            format!("{} / {}", d.resets, d.skipped_after_reset),
        ),
        ("error ratio", format!("{:.4}", r.error_ratio)),
        (
            "errors",
            r.errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "server CPU mean / max %",
            format!(
                "{} / {}",
                opt(r.server.cpu_percent_mean),
                opt(r.server.cpu_percent_max)
            ),
        ),
        (
            "server RSS max / last MiB",
            format!("{} / {}", opt(r.server.rss_mib_max), opt(r.server.rss_mib_last)),
        ),
    ];
    if let Some(steady) = &r.steady {
        // Right below the whole-run latencies, which are rows 2 and 3.
        let e2e = if r.e2e_measured {
            pct(&steady.e2e_ms)
        } else {
            "not measured".into()
        };
        rows.splice(
            4..4,
            [
                ("ack after the warm-up (thresholds), ms", pct(&steady.ack_ms)),
                ("e2e after the warm-up (thresholds), ms", e2e),
            ],
        );
    }
    for (k, v) in rows {
        let _ = write!(page, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    }
    page.push_str("</table>");
    if let Some(k) = &r.knee {
        let _ = write!(
            page,
            "<h2>Knee</h2><p>At {:.0} s, offered {:.0} records/s: {}. Last good window accepted {:.0} records/s.</p>",
            k.at_secs,
            k.offered_rps,
            esc(&k.reason),
            k.last_good_accepted_rps
        );
    }
    let s = &r.series;
    let series = |f: fn(&Sample) -> Option<f64>| -> Vec<(f64, f64)> {
        s.iter().filter_map(|x| f(x).map(|y| (x.t, y))).collect()
    };
    page.push_str("<h2>Over time</h2>");
    page.push_str(&chart(
        "Records per second",
        &[
            Line {
                label: "offered",
                color: "#999",
                points: series(|x| Some(x.offered_rps)),
            },
            Line {
                label: "accepted",
                color: "#1f77b4",
                points: series(|x| Some(x.accepted_rps)),
            },
            Line {
                label: "events (all subscribers)",
                color: "#2ca02c",
                points: series(|x| Some(x.events_ps)),
            },
        ],
    ));
    page.push_str(&chart(
        "Latency, ms",
        &[
            Line {
                label: "ack p50",
                color: "#aec7e8",
                points: series(|x| (x.ack.count > 0).then_some(x.ack.p50)),
            },
            Line {
                label: "ack p99",
                color: "#1f77b4",
                points: series(|x| (x.ack.count > 0).then_some(x.ack.p99)),
            },
            Line {
                label: "e2e p50",
                color: "#98df8a",
                points: series(|x| (x.e2e.count > 0).then_some(x.e2e.p50)),
            },
            Line {
                label: "e2e p99",
                color: "#2ca02c",
                points: series(|x| (x.e2e.count > 0).then_some(x.e2e.p99)),
            },
        ],
    ));
    page.push_str(&chart(
        "Errors per second",
        &[Line {
            label: "errors",
            color: "#d62728",
            points: series(|x| Some(x.errors_ps)),
        }],
    ));
    page.push_str(&chart(
        "Server CPU, % of one core",
        &[Line {
            label: "CPU",
            color: "#9467bd",
            points: series(|x| x.cpu_percent),
        }],
    ));
    page.push_str(&chart(
        "Server resident memory, MiB",
        &[Line {
            label: "RSS",
            color: "#8c564b",
            points: series(|x| x.rss_mib),
        }],
    ));
    page.push_str("</body></html>\n");
    page
}

/// A line chart with a time axis (s) and a value axis from 0.
fn chart(title: &str, lines: &[Line<'_>]) -> String {
    let all = lines.iter().flat_map(|l| l.points.iter());
    let (mut t_max, mut y_max) = (1.0f64, 0.0f64);
    for &(t, y) in all {
        t_max = t_max.max(t);
        y_max = y_max.max(y);
    }
    let y_max = nice_ceiling(y_max);
    let x = |t: f64| LEFT + (W - LEFT - 10.0) * t / t_max;
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - v / y_max);
    let mut svg = format!(
        "<h3>{}</h3><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-size=\"11\">",
        esc(title)
    );
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - 10.0,
            LEFT - 4.0,
            y(v) + 4.0,
            num(v),
            yy = y(v)
        );
    }
    for i in 0..=5 {
        let t = t_max * f64::from(i) / 5.0;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{:.0} s</text>",
            x(t),
            H - 10.0,
            t
        );
    }
    let mut legend_x = LEFT;
    for line in lines {
        if !line.points.is_empty() {
            let points: Vec<String> = line
                .points
                .iter()
                .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
                .collect();
            let _ = write!(
                svg,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>",
                line.color,
                points.join(" ")
            );
        }
        let _ = write!(
            svg,
            "<rect x=\"{legend_x}\" y=\"6\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"15\">{}</text>",
            line.color,
            legend_x + 14.0,
            esc(line.label)
        );
        legend_x += 24.0 + 6.5 * line.label.len() as f64;
    }
    svg.push_str("</svg>");
    svg
}

/// 1, 2 or 5 × a power of ten at or above `v` (at least 1).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 1.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * p)
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        "not measured".into()
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.1}"))
}

fn pct(p: &super::Percentiles) -> String {
    format!("{:.1} / {:.1} / {:.1} / {:.1}", p.p50, p.p95, p.p99, p.max)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(130.0), 200.0);
        assert_eq!(nice_ceiling(4999.0), 5000.0);
        assert_eq!(nice_ceiling(51_000.0), 100_000.0);
    }

    #[test]
    fn charts_plot_every_point_and_escape_labels() {
        let svg = chart(
            "a < b",
            &[Line {
                label: "x&y",
                color: "#000",
                points: vec![(0.0, 0.0), (1.0, 5.0), (2.0, 10.0)],
            }],
        );
        assert!(svg.contains("a &lt; b") && svg.contains("x&amp;y"));
        let points = svg.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(points.split(' ').count(), 3);
    }
}
