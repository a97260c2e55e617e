//! Progress drawing for the libraries' reporter traits: status lines for git
//! work, bars with bytes, rate and ETA for downloads (only on a terminal).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::output::Printer;

/// Node-cache events as status lines on stderr.
pub(crate) struct StatusLines<'a>(pub &'a Printer);

impl comfyver_git::Reporter for StatusLines<'_> {
    fn fetching(&self, repo: &str, what: &str) {
        self.0.info(&format!("fetching {repo} ({what})"));
    }

    fn reading_remote(&self, repo: &str, commit: &str, paths: &[&str]) {
        self.0.debug(&format!(
            "reading {} of {repo} @ {} from the remote (its trees only)",
            paths.join(", "),
            short(commit)
        ));
    }
}

impl comfyver_nodes::Reporter for StatusLines<'_> {
    fn checking_out(&self, name: &str, commit: &str) {
        self.0
            .info(&format!("checking out {name} @ {}", short(commit)));
    }

    fn ready(&self, name: &str, commit: &str, path: &Path, was_cached: bool) {
        let how = if was_cached { "cached" } else { "ready" };
        self.0.debug(&format!(
            "{how}: {name} @ {} at {}",
            short(commit),
            path.display()
        ));
    }
}

/// Download progress bars (bytes, rate, ETA) on a terminal; notes otherwise.
pub(crate) struct Bars<'a> {
    out: &'a Printer,
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl<'a> Bars<'a> {
    /// Bars drawn only when stderr is a terminal and `-q` is not given.
    pub(crate) fn new(out: &'a Printer) -> Bars<'a> {
        Bars {
            out,
            multi: out.progress_enabled().then(MultiProgress::new),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn bar(&self, path: &str) -> Option<ProgressBar> {
        let multi = self.multi.as_ref()?;
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        let bar = bars.entry(path.to_string()).or_insert_with(|| {
            let style = ProgressStyle::with_template(
                "{msg:30!} {bar:30} {bytes:>10}/{total_bytes:10} {binary_bytes_per_sec:>12} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            let b = multi.add(ProgressBar::no_length().with_style(style));
            b.set_message(path.to_string());
            b
        });
        Some(bar.clone())
    }
}

impl comfyver_models::Reporter for Bars<'_> {
    fn start(&self, path: &str, done: u64, total: Option<u64>) {
        match self.bar(path) {
            Some(b) => {
                if let Some(t) = total {
                    b.set_length(t);
                }
                b.set_position(done);
            }
            None => self.out.debug(&format!("fetching {path}")),
        }
    }

    fn progress(&self, path: &str, done: u64, total: Option<u64>) {
        if let Some(b) = self.bar(path) {
            if let Some(t) = total {
                b.set_length(t);
            }
            b.set_position(done);
        }
    }

    fn finish(&self, path: &str) {
        let bar = self
            .bars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(path);
        if let Some(b) = bar {
            b.finish_and_clear();
        }
    }

    fn note(&self, path: &str, message: &str) {
        let line = format!("{path}: {message}");
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => self.out.info(&line),
        }
    }
}

/// A realize's progress: step lines, node lines and download bars.
pub(crate) struct RealizeProgress<'a> {
    out: &'a Printer,
    nodes: StatusLines<'a>,
    bars: Bars<'a>,
}

impl<'a> RealizeProgress<'a> {
    /// Progress written through `out`.
    pub(crate) fn new(out: &'a Printer) -> RealizeProgress<'a> {
        RealizeProgress {
            out,
            nodes: StatusLines(out),
            bars: Bars::new(out),
        }
    }
}

impl comfyver_realize::RealizeReporter for RealizeProgress<'_> {
    fn nodes(&self) -> &dyn comfyver_nodes::Reporter {
        &self.nodes
    }
    fn models(&self) -> &dyn comfyver_models::Reporter {
        &self.bars
    }
    fn step(&self, name: &str, detail: &str) {
        if detail.is_empty() {
            self.out.info(&format!("== {name}"));
        } else {
            self.out.info(&format!("== {name}: {detail}"));
        }
    }
}

/// A job's progress: a line per node and, on a terminal, a bar for nodes
/// that report steps.
pub(crate) struct JobProgress<'a> {
    out: &'a Printer,
    bar: Option<ProgressBar>,
}

impl<'a> JobProgress<'a> {
    /// Progress written through `out`.
    pub(crate) fn new(out: &'a Printer) -> JobProgress<'a> {
        let bar = out.progress_enabled().then(|| {
            let style = ProgressStyle::with_template("{msg:24!} {bar:40} {pos}/{len} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            ProgressBar::hidden().with_style(style)
        });
        JobProgress { out, bar }
    }
}

impl comfyver_handler::JobReporter for JobProgress<'_> {
    fn queued(&self, prompt_id: &str) {
        self.out.info(&format!("queued prompt {prompt_id}"));
    }

    fn node_started(&self, node_id: &str, class_type: &str) {
        match &self.bar {
            Some(b) => b.println(format!("executing node {node_id} ({class_type})")),
            None => self
                .out
                .info(&format!("executing node {node_id} ({class_type})")),
        }
    }

    fn progress(&self, node_id: &str, value: f64, max: f64) {
        match &self.bar {
            Some(b) => {
                if b.is_hidden() {
                    b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                }
                b.set_message(format!("node {node_id}"));
                b.set_length(max.max(0.0) as u64);
                b.set_position(value.max(0.0) as u64);
                if value >= max {
                    b.finish_and_clear();
                    b.reset();
                    b.set_draw_target(indicatif::ProgressDrawTarget::hidden());
                }
            }
            None => self.out.debug(&format!("node {node_id}: {value}/{max}")),
        }
    }
}

/// The first 12 hex digits of a commit.
pub(crate) fn short(commit: &str) -> &str {
    if commit.len() > 12 {
        &commit[..12]
    } else {
        commit
    }
}
