//! Progress of a realize, so the CLI can draw it.

/// Receives realize progress. The nodes and models parts use their crates'
/// own reporter traits.
pub trait RealizeReporter: Sync {
    /// The node-cache reporter.
    fn nodes(&self) -> &dyn comfyver_nodes::Reporter;
    /// The model-download reporter.
    fn models(&self) -> &dyn comfyver_models::Reporter;
    /// A step starts (`core`, `nodes`, `models`, `python`, `install scripts`).
    fn step(&self, name: &str, detail: &str) {
        let _ = (name, detail);
    }
}

/// A reporter that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoReporter;

impl RealizeReporter for NoReporter {
    fn nodes(&self) -> &dyn comfyver_nodes::Reporter {
        &comfyver_nodes::NoReporter
    }
    fn models(&self) -> &dyn comfyver_models::Reporter {
        &comfyver_models::NoReporter
    }
}
