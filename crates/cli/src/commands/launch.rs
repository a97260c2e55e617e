//! `comfyver launch`: a version's ComfyUI in the foreground with its web UI,
//! realized like `run` (the warm path first), until Ctrl-C.

use std::time::Duration;

use clap::Args;
use comfyver_handler::Session;

use super::session_flags::StartFlags;

use crate::context::Ctx;
use crate::diagnostics::Exit;
use crate::pipeline::{self, RealizeFlags};
use crate::progress::RealizeProgress;

/// How often the foreground loop looks for Ctrl-C and for ComfyUI's exit.
const WATCH_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Args)]
pub(crate) struct LaunchArgs {
    /// The version id (or use --spec FILE).
    #[arg(required_unless_present = "spec")]
    pub id: Option<String>,
    /// Also listen on this address (`0.0.0.0`: every interface); ComfyUI
    /// always answers on 127.0.0.1.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// The port of the web UI [default: a free one].
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// How ComfyUI starts.
    #[command(flatten)]
    pub start: StartFlags,
    #[command(flatten)]
    pub flags: RealizeFlags,
}

pub(crate) fn run(ctx: &Ctx, mut args: LaunchArgs) -> anyhow::Result<Exit> {
    // One `--confine` for ComfyUI and the install scripts a realize runs.
    args.flags.confine = args.start.confine;
    let progress = RealizeProgress::new(&ctx.out);
    // The home stays in use (no realize or remove changes it) until ComfyUI stops.
    let (env, _in_use) = pipeline::comfy_env(ctx, args.id.as_deref(), &args.flags, &progress)?;
    let mut start = args.start.start_options(args.start.comfy_args.clone());
    start.port = args.port;
    start.listen = args.listen.clone();
    // The web UI's own save writes the workflow into images: keep it.
    start.keep_metadata = true;
    // The first Ctrl-C stops ComfyUI below; a second one stops everything at once.
    comfyver_fs::child::enable_graceful_stop();
    let session = Session::start(&env, &start)?;
    ctx.out.info(&session.device().to_string());
    ctx.out.info(&format!(
        "user data (saved workflows, settings) in {}; log in {}",
        session.data_dir().join("user").display(),
        session.log_path().display()
    ));
    ctx.out.data(&url(args.listen.as_deref(), session.port()));
    ctx.out.info("press Ctrl-C to stop ComfyUI");
    while comfyver_fs::child::stop_requested().is_none() {
        if let Some(status) = session.exit_status() {
            anyhow::bail!(
                "ComfyUI of `{}` exited by itself ({status}); its log: {}",
                session.version_id(),
                session.log_path().display()
            );
        }
        std::thread::sleep(WATCH_EVERY);
    }
    let ended = session.stop();
    ctx.out.info(&format!(
        "ComfyUI stopped ({})",
        ended.as_deref().unwrap_or("status unknown")
    ));
    Ok(Exit::Success)
}

/// The web UI's address: the one asked for, or 127.0.0.1 when ComfyUI
/// listens on loopback or on every interface.
fn url(listen: Option<&str>, port: u16) -> String {
    match listen.map(str::trim) {
        None | Some("" | "0.0.0.0" | "::") => format!("http://127.0.0.1:{port}/"),
        Some(addr) if addr.contains(':') => format!("http://[{addr}]:{port}/"),
        Some(addr) => format!("http://{addr}:{port}/"),
    }
}

#[cfg(test)]
mod tests {
    use super::url;

    #[test]
    fn url_names_an_address_a_browser_reaches() {
        assert_eq!(url(None, 8188), "http://127.0.0.1:8188/");
        assert_eq!(url(Some("0.0.0.0"), 81), "http://127.0.0.1:81/");
        assert_eq!(url(Some("192.168.1.5"), 81), "http://192.168.1.5:81/");
        assert_eq!(url(Some("fd00::5"), 81), "http://[fd00::5]:81/");
    }
}
