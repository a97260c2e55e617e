//! comfyver-nodes' integration tests, one binary: checkouts, shared cores
//! and gc (`checkout`), and what realize learns of a core before its
//! checkout (`probe`).
#![allow(clippy::unwrap_used, reason = "a panic is the failure report")]

mod checkout;
mod probe;
