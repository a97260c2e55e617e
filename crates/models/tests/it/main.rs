//! The model store's integration tests, one binary: downloads against a
//! loopback HTTP server with injected faults, limits, repair, two sources on
//! one store path, and chunked downloads over several connections.

mod chunked;
mod fetch;
mod limits;
mod repair;
mod same_path;
