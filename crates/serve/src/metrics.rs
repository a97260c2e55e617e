//! The worker's counters and histograms, rendered for `GET /metrics` in
//! Prometheus' text exposition format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// The `Content-Type` of the text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the histogram buckets: from a warm job on a
/// small graph (milliseconds) to a long video job (half an hour).
const BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Observations per bucket (not cumulative; summed when rendered).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| s <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += s;
    }

    /// The `_bucket`, `_sum` and `_count` lines of `name` with `labels`
    /// (`k="v",` pairs, possibly empty).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(self.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {}", self.count);
        let labels = labels.trim_end_matches(',');
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// (status, version) → jobs ended so.
    jobs: BTreeMap<(String, String), u64>,
    job_duration: Histogram,
    queue_wait: Histogram,
    /// version → its ComfyUI's start durations.
    starts: BTreeMap<String, Histogram>,
    switches: u64,
    evictions: u64,
    webhook_deliveries: u64,
    webhook_failures: u64,
}

/// What the worker counts; shared by the job thread, the API and the webhook
/// deliveries.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A job ended with `status` on `version`, after running `ran` (none: it
    /// never ran, e.g. cancelled in the queue).
    pub(crate) fn job_ended(&self, status: &str, version: &str, ran: Option<Duration>) {
        let mut m = self.lock();
        *m.jobs
            .entry((status.to_string(), version.to_string()))
            .or_default() += 1;
        if let Some(d) = ran {
            m.job_duration.observe(d);
        }
    }

    /// A job left the queue after waiting `waited`.
    pub(crate) fn job_started(&self, waited: Duration) {
        self.lock().queue_wait.observe(waited);
    }

    /// A ComfyUI of `version` started in `took`.
    pub(crate) fn comfy_started(&self, version: &str, took: Duration) {
        self.lock()
            .starts
            .entry(version.to_string())
            .or_default()
            .observe(took);
    }

    /// The active version changed.
    pub(crate) fn switched(&self) {
        self.lock().switches += 1;
    }

    /// An idle ComfyUI was stopped to make room for another version's.
    pub(crate) fn evicted(&self) {
        self.lock().evictions += 1;
    }

    /// A webhook was delivered (`true`), or finally failed (`false`).
    pub(crate) fn webhook(&self, delivered: bool) {
        let mut m = self.lock();
        if delivered {
            m.webhook_deliveries += 1;
        } else {
            m.webhook_failures += 1;
        }
    }

    /// The text exposition, with the queue as it is now.
    pub(crate) fn render(&self, queued: usize, running: bool) -> String {
        let m = self.lock();
        let mut out = String::new();
        out.push_str("# HELP comfyver_jobs_total Jobs ended, by status and version.\n");
        out.push_str("# TYPE comfyver_jobs_total counter\n");
        for ((status, version), n) in &m.jobs {
            let _ = writeln!(
                out,
                "comfyver_jobs_total{{status=\"{}\",version=\"{}\"}} {n}",
                escape(status),
                escape(version)
            );
        }
        out.push_str("# HELP comfyver_job_duration_seconds How long jobs ran.\n");
        out.push_str("# TYPE comfyver_job_duration_seconds histogram\n");
        m.job_duration
            .render(&mut out, "comfyver_job_duration_seconds", "");
        out.push_str("# HELP comfyver_queue_wait_seconds How long jobs waited in the queue.\n");
        out.push_str("# TYPE comfyver_queue_wait_seconds histogram\n");
        m.queue_wait
            .render(&mut out, "comfyver_queue_wait_seconds", "");
        out.push_str("# HELP comfyver_queue_depth Jobs waiting in the queue.\n");
        out.push_str("# TYPE comfyver_queue_depth gauge\n");
        let _ = writeln!(out, "comfyver_queue_depth {queued}");
        out.push_str("# HELP comfyver_jobs_running Jobs running (0 or 1).\n");
        out.push_str("# TYPE comfyver_jobs_running gauge\n");
        let _ = writeln!(out, "comfyver_jobs_running {}", u8::from(running));
        out.push_str("# HELP comfyver_comfyui_starts_total ComfyUI starts, by version.\n");
        out.push_str("# TYPE comfyver_comfyui_starts_total counter\n");
        for (version, h) in &m.starts {
            let _ = writeln!(
                out,
                "comfyver_comfyui_starts_total{{version=\"{}\"}} {}",
                escape(version),
                h.count
            );
        }
        out.push_str(
            "# HELP comfyver_comfyui_start_duration_seconds How long ComfyUI took to be ready, by version.\n",
        );
        out.push_str("# TYPE comfyver_comfyui_start_duration_seconds histogram\n");
        for (version, h) in &m.starts {
            let labels = format!("version=\"{}\",", escape(version));
            h.render(&mut out, "comfyver_comfyui_start_duration_seconds", &labels);
        }
        out.push_str(
            "# HELP comfyver_version_switches_total Jobs that ran on another version than the job before.\n",
        );
        out.push_str("# TYPE comfyver_version_switches_total counter\n");
        let _ = writeln!(out, "comfyver_version_switches_total {}", m.switches);
        out.push_str(
            "# HELP comfyver_warm_evictions_total Idle ComfyUIs stopped to make room for another version's.\n",
        );
        out.push_str("# TYPE comfyver_warm_evictions_total counter\n");
        let _ = writeln!(out, "comfyver_warm_evictions_total {}", m.evictions);
        out.push_str("# HELP comfyver_webhook_deliveries_total Webhooks delivered.\n");
        out.push_str("# TYPE comfyver_webhook_deliveries_total counter\n");
        let _ = writeln!(
            out,
            "comfyver_webhook_deliveries_total {}",
            m.webhook_deliveries
        );
        out.push_str(
            "# HELP comfyver_webhook_failures_total Webhooks that failed after every retry.\n",
        );
        out.push_str("# TYPE comfyver_webhook_failures_total counter\n");
        let _ = writeln!(
            out,
            "comfyver_webhook_failures_total {}",
            m.webhook_failures
        );
        out
    }
}

/// A label value escaped as the text format asks (`\\`, `\"`, `\n`).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let m = Metrics::default();
        m.job_ended("COMPLETED", "v1", Some(Duration::from_millis(3)));
        m.job_ended("COMPLETED", "v1", Some(Duration::from_millis(300)));
        m.job_ended("FAILED", "a\"b", None);
        let text = m.render(2, true);
        assert!(text.contains("comfyver_jobs_total{status=\"COMPLETED\",version=\"v1\"} 2"));
        assert!(text.contains("comfyver_jobs_total{status=\"FAILED\",version=\"a\\\"b\"} 1"));
        assert!(text.contains("comfyver_job_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("comfyver_job_duration_seconds_bucket{le=\"0.5\"} 2\n"));
        assert!(text.contains("comfyver_job_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("comfyver_job_duration_seconds_count 2\n"));
        assert!(text.contains("comfyver_queue_depth 2\n"));
    }
}
