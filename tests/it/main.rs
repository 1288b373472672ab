//! Integration tests: one binary, shared harness (the hickory-dns layout).

mod api;
mod api_limits;
mod atomic;
mod audit;
mod authz;
mod cli;
mod consistency;
mod harness;
mod hook_receiver;
mod hsm;
mod https;
mod idempotency;
mod layering;
mod pages;
mod playback;
mod playback_damage;
mod pseudonyms;
mod recording_states;
mod retention;
mod rig;
mod routing;
mod sip;
mod softhsm;
mod store;
mod webdriver;
mod webhooks;
