//! comfyver-nodes' integration tests, one binary: checkouts, shared cores
//! and gc (`checkout`), and what realize learns of a core before its
//! checkout (`probe`).

mod checkout;
mod probe;
