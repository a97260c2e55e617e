//! The CLI's [`JobModelProvider`]: a job's models fetched into the shared
//! model store with [`comfyver_models::job_models::fetch_job_models`], only from hosts
//! `COMFYVER_JOB_MODEL_HOSTS` allows when they are not public, and kept
//! within `--job-models-max-gb`.

use comfyver_fs::CacheLayout;
use comfyver_handler::job_models::{JobModel, JobModelProvider, ModelFailure, ProvidedModels};
use comfyver_models::job_models::{JobModelOptions, JobModelRequest, fetch_job_models};
use comfyver_models::{FetchOptions, HostRule, NoReporter};

use crate::context::Ctx;
use crate::pipeline;

/// Fetches job models into the store of one cache layout.
#[derive(Debug)]
pub(crate) struct StoreJobModels {
    layout: CacheLayout,
    opts: JobModelOptions,
}

impl StoreJobModels {
    /// The provider for `ctx`'s store, with a budget of `max_gb` GB (decimal)
    /// of files only jobs brought. The models every spec and lock references
    /// are read now and never evicted.
    pub(crate) fn new(ctx: &Ctx, max_gb: Option<f64>) -> anyhow::Result<StoreJobModels> {
        let referenced = match max_gb {
            Some(_) => pipeline::references(ctx, false)?.models(),
            None => Vec::new(),
        };
        Ok(StoreJobModels {
            layout: ctx.layout.clone(),
            opts: JobModelOptions {
                fetch: FetchOptions {
                    jobs: ctx.jobs,
                    ..FetchOptions::default()
                },
                hosts: HostRule::from_env(),
                max_bytes: max_gb.map(|gb| (gb.max(0.0) * 1e9) as u64),
                referenced,
            },
        })
    }
}

impl JobModelProvider for StoreJobModels {
    fn provide(&self, models: &[JobModel]) -> Result<ProvidedModels, ModelFailure> {
        let requests: Vec<JobModelRequest> = models
            .iter()
            .map(|m| JobModelRequest {
                source: m.source.clone(),
                target_subdir: m.target_subdir.clone(),
                name: m.name.clone(),
                sha256: m.sha256.clone(),
                size: m.size,
            })
            .collect();
        let in_use =
            fetch_job_models(&self.layout, &requests, &self.opts, &NoReporter).map_err(|e| {
                ModelFailure {
                    index: e.index,
                    reason: e.source,
                }
            })?;
        Ok(ProvidedModels {
            names: in_use.names.clone(),
            guard: Box::new(in_use),
        })
    }
}
