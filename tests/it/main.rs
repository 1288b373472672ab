//! Integration tests: one binary, shared harness (the hickory-dns layout).

mod api;
mod cli;
mod harness;
mod routing;
mod sip;
mod store;
