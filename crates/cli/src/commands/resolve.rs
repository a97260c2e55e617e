//! `comfyver resolve <id>...|--all [--update [NAME]]... [--locked] [--dry-run] [--jobs N]`.

use clap::Args;
use comfyver_resolver::{
    EntryOutcome, LockChange, Reporter, ResolveError, ResolveOptions, ResolveOutcome, UpdatePolicy,
};
use serde_json::{Value, json};

use crate::context::Ctx;
use crate::diagnostics::Exit;
use crate::diagnostics::Failures;
use crate::output::Printer;

#[derive(Debug, Args)]
pub(crate) struct ResolveArgs {
    /// Version ids (or paths to spec files).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub ids: Vec<String>,
    /// Every spec in the versions directory.
    #[arg(long)]
    pub all: bool,
    /// Re-resolve locked entries: all of them, or only NAME (a node name, or
    /// `comfy` for the core). Repeatable. Put version ids before this flag.
    #[arg(long, value_name = "NAME", num_args = 0..=1, action = clap::ArgAction::Append)]
    pub update: Option<Vec<String>>,
    /// Fail (exit 1, printing what would change) if the lock is missing or would change.
    #[arg(long, conflicts_with = "update")]
    pub locked: bool,
    /// Print the plan and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// One progress line per repository on stderr (hidden by `-q`).
struct Progress<'a> {
    out: &'a Printer,
}

impl Reporter for Progress<'_> {
    fn resolving(&self, entry: &str, repo: &str) {
        self.out.info(&format!("resolving {entry} from {repo}"));
    }

    fn resolved(&self, entry: &EntryOutcome) {
        self.out.debug(&format!(
            "resolved {} {} -> {}",
            entry.label,
            entry.wanted(),
            short(entry.commit.as_deref())
        ));
    }
}

pub(crate) fn run(ctx: &Ctx, args: ResolveArgs) -> anyhow::Result<Exit> {
    let targets = ctx.targets(&args.ids, args.all)?;
    let update = match &args.update {
        None => UpdatePolicy::None,
        Some(names) if names.is_empty() => UpdatePolicy::All,
        Some(names) => UpdatePolicy::Names(names.clone()),
    };
    let progress = Progress { out: &ctx.out };
    let mut reports = Vec::new();
    let mut failures: Vec<(String, anyhow::Error)> = Vec::new();
    for target in &targets {
        let result = ctx.load(target).and_then(|loaded| {
            let spec = loaded.spec;
            let opts = ResolveOptions {
                locked: args.locked,
                dry_run: args.dry_run,
                update: update.clone(),
                ..ctx.resolve_options(Some(&spec))?
            };
            comfyver_resolver::resolve(&spec, &ctx.layout, &opts, &progress)
                .map_err(anyhow::Error::new)
                .map(|outcome| (spec.version_id.clone(), outcome))
        });
        match result {
            Ok((id, outcome)) => {
                for w in &outcome.warnings {
                    ctx.out.warn(&format!("{id}: {w}"));
                }
                if ctx.json {
                    reports.push(report_json(&id, &outcome, args.dry_run));
                } else {
                    print_outcome(&ctx.out, &id, &outcome, args.dry_run, targets.len() > 1);
                }
            }
            Err(err) => {
                if ctx.json {
                    reports.push(error_json(target, &err));
                }
                failures.push((target.clone(), err));
            }
        }
    }
    if ctx.json {
        ctx.out.json(&json!({"versions": reports}));
    }
    Failures::finish(failures, targets.len(), ctx.json, |n, of| {
        format!("{n} of {of} versions failed to resolve")
    })
}

fn short(commit: Option<&str>) -> &str {
    match commit {
        Some(c) => &c[..c.len().min(12)],
        None => "(would resolve)",
    }
}

fn print_outcome(o: &Printer, id: &str, out: &ResolveOutcome, dry_run: bool, header: bool) {
    if header || dry_run {
        o.data(&format!("{id}:"));
    }
    let width = out.entries.iter().map(|e| e.key.len()).max().unwrap_or(5);
    for e in &out.entries {
        if dry_run {
            o.data(&format!(
                "  {:<width$}  {}  {} -> {}",
                e.key,
                e.repo,
                e.wanted(),
                short(e.commit.as_deref())
            ));
        } else {
            o.data(&format!(
                "{:<width$}  {} -> {}",
                e.key,
                e.wanted(),
                short(e.commit.as_deref())
            ));
        }
    }
    if dry_run {
        if out.changes.is_empty() {
            o.data("  lock: no entry changes");
        } else {
            o.data("  lock changes:");
            for c in &out.changes {
                o.data(&format!("    {c}"));
            }
        }
        o.info(&format!(
            "dry run: nothing written ({})",
            out.lock_path.display()
        ));
    } else if out.written {
        for c in &out.changes {
            o.info(&format!("  {c}"));
        }
        o.info(&format!("lock written: {}", out.lock_path.display()));
    } else {
        o.info(&format!("lock unchanged: {}", out.lock_path.display()));
    }
}

fn change_json(c: &LockChange) -> Value {
    json!({
        "entry": c.entry,
        "kind": format!("{:?}", c.kind).to_lowercase(),
        "old_ref": c.old_ref, "old_commit": c.old_commit,
        "new_ref": c.new_ref, "new_commit": c.new_commit,
    })
}

fn report_json(id: &str, out: &ResolveOutcome, dry_run: bool) -> Value {
    json!({
        "version_id": id,
        "ok": true,
        "lock_path": out.lock_path,
        "written": out.written,
        "dry_run": dry_run,
        "entries": out.entries.iter().map(|e| json!({
            "key": e.key, "label": e.label, "repo": e.repo, "ref": e.git_ref,
            "commit": e.commit, "source": e.source.as_str(),
        })).collect::<Vec<_>>(),
        "changes": out.changes.iter().map(change_json).collect::<Vec<_>>(),
    })
}

fn error_json(target: &str, err: &anyhow::Error) -> Value {
    let mut v = json!({"target": target, "ok": false, "error": format!("{err:#}")});
    if let Some(ResolveError::LockWouldChange { changes, .. }) = err.downcast_ref() {
        v["changes"] = changes.iter().map(change_json).collect();
    }
    v
}
