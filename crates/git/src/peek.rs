//! Reading a few files of a commit straight from its remote, before the
//! commit is fetched: a `filter blob:none` fetch of the commit at depth 1
//! (the commit and its trees, no file contents) into a throwaway repository,
//! then a fetch of just the blobs at the paths asked for. For a core this is
//! a small fraction of its pack, so realize learns the core's requirements
//! while the full fetch into the mirror (which the checkout needs) is still
//! to come. Both requests go over one connection; a server without `filter`
//! or `shallow` support is told apart at the first request and sends
//! nothing.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use gix::ObjectId;
use gix::protocol::fetch::negotiate::{self, Action, Round};
use gix::protocol::fetch::{Arguments, Context, Negotiate, Options, Response, Shallow, Tags};
use gix::protocol::transport::client::blocking_io::Transport;
use gix::protocol::transport::{Protocol, Service};

use crate::TreeFile;
use crate::mirror::{TreeEntry, tree_entry};

/// The filter of the first request: every object but the blobs.
const NO_BLOBS: &str = "blob:none";

/// One peek: what is asked for, and what was read.
pub(crate) struct Peek {
    commit: ObjectId,
    paths: Vec<String>,
    files: Option<Vec<TreeFile>>,
}

impl Peek {
    pub(crate) fn new(commit: ObjectId, paths: &[&str]) -> Peek {
        Peek {
            commit,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            files: None,
        }
    }

    /// The files, in the order of the paths; `None` when the remote could
    /// not serve them without the full fetch.
    pub(crate) fn into_files(self) -> Option<Vec<TreeFile>> {
        self.files
    }

    /// Runs both requests over `conn`, whose remote belongs to the throwaway
    /// repository the objects are written into.
    pub(crate) fn run<T: Transport>(
        &mut self,
        mut conn: gix::remote::Connection<'_, '_, '_, T>,
    ) -> Result<(), gix::Error> {
        let repo = conn.remote().repo().clone();
        let auth = conn.configured_credentials_for_current_url();
        let mut handshake = gix::protocol::handshake(
            conn.transport_mut(),
            Service::UploadPack,
            auth,
            Vec::new(),
            &mut gix::progress::Discard,
        )?;
        let mut trees = Wants::new(vec![self.commit], Some(NO_BLOBS));
        let depth_one = Shallow::DepthAtRemote(NonZeroU32::MIN);
        if !receive(&repo, &mut conn, &mut handshake, &mut trees, &depth_one)? {
            return Ok(());
        }
        let repo = reopen(&repo)?;
        let entries: Vec<TreeEntry> = self
            .paths
            .iter()
            .map(|path| tree_entry(&repo, self.commit, path))
            .collect::<Result<_, _>>()?;
        let blobs: Vec<ObjectId> = entries
            .iter()
            .filter_map(|e| match e {
                TreeEntry::Blob(id) => Some(*id),
                _ => None,
            })
            .collect();
        if !blobs.is_empty() {
            let mut wanted = Wants::new(blobs, None);
            if !receive(
                &repo,
                &mut conn,
                &mut handshake,
                &mut wanted,
                &Shallow::NoChange,
            )? {
                return Ok(());
            }
        }
        if handshake.server_protocol_version == Protocol::V2 {
            let _ = gix::protocol::indicate_end_of_interaction(conn.transport_mut(), false);
        }
        let repo = reopen(&repo)?;
        let files = entries
            .into_iter()
            .map(|entry| {
                Ok(match entry {
                    TreeEntry::Absent => TreeFile::Absent,
                    TreeEntry::Other => TreeFile::Other,
                    TreeEntry::Blob(id) => TreeFile::Blob(repo.find_object(id)?.detach().data),
                })
            })
            .collect::<Result<_, gix::Error>>()?;
        self.files = Some(files);
        Ok(())
    }
}

/// A fresh handle on `repo`, which sees the packs written since it opened.
fn reopen(repo: &gix::Repository) -> Result<gix::Repository, gix::Error> {
    gix::open_opts(repo.git_dir(), gix::open::Options::isolated())
}

/// One `fetch` request over the connection, its pack written into `repo`.
/// `false` when the server cannot do what `wants` needs (it was asked
/// nothing).
fn receive<T: Transport>(
    repo: &gix::Repository,
    conn: &mut gix::remote::Connection<'_, '_, '_, T>,
    handshake: &mut gix::protocol::Handshake,
    wants: &mut Wants,
    shallow: &Shallow,
) -> Result<bool, gix::Error> {
    let pack_dir: PathBuf = repo.objects.store_ref().path().join("pack");
    let interrupt = AtomicBool::new(false);
    let outcome = gix::protocol::fetch(
        wants,
        |pack, progress, interrupt| {
            gix::odb::pack::Bundle::write_to_directory(
                pack,
                Some(&pack_dir),
                progress,
                interrupt,
                Some(repo.objects.clone()),
                repo.object_hash(),
                Default::default(),
            )?;
            Ok(true)
        },
        gix::progress::Discard,
        &interrupt,
        Context {
            handshake,
            transport: conn.transport_mut(),
            user_agent: ("agent", Some(gix::protocol::agent(gix::env::agent()))),
            trace_packetlines: false,
        },
        Options {
            shallow_file: repo.shallow_file()?,
            shallow,
            tags: Tags::None,
            reject_shallow_remote: false,
        },
    )?;
    Ok(outcome.is_some() && !wants.unsupported)
}

/// The negotiation of a peek: the objects wanted, by id, with no haves (the
/// throwaway repository has nothing to offer).
struct Wants {
    ids: Vec<ObjectId>,
    filter: Option<&'static str>,
    unsupported: bool,
}

impl Wants {
    fn new(ids: Vec<ObjectId>, filter: Option<&'static str>) -> Wants {
        Wants {
            ids,
            filter,
            unsupported: false,
        }
    }
}

impl Negotiate for Wants {
    fn mark_complete_and_common_ref(&mut self) -> gix::Result<Action> {
        Ok(Action::MustNegotiate {
            remote_ref_target_known: Vec::new(),
        })
    }

    fn add_wants(&mut self, arguments: &mut Arguments, _known: &[bool]) -> bool {
        if let Some(filter) = self.filter {
            if !arguments.can_use_filter() {
                self.unsupported = true;
                return false;
            }
            arguments.filter(filter);
        }
        for id in &self.ids {
            arguments.want(id);
        }
        true
    }

    fn one_round(
        &mut self,
        _state: &mut negotiate::one_round::State,
        _arguments: &mut Arguments,
        _previous: Option<&Response>,
    ) -> gix::Result<(Round, bool)> {
        let round = Round {
            haves_sent: 0,
            in_vain: 0,
            haves_to_send: 0,
            previous_response_had_at_least_one_in_common: false,
        };
        Ok((round, true))
    }
}
