//! The one integration test binary. Every test starts its own real registry (Debian's
//! `docker-registry`) on 127.0.0.1 and pushes its own images; see `support/`.

mod break_glass;
mod browser;
mod config;
mod daemon;
mod deploy;
mod discord;
mod drill;
mod ha;
mod interrupted;
mod manifests;
mod notify;
mod notify_startup;
mod pipeline;
mod pulls;
mod render;
mod rollback;
mod runbook;
mod scale;
mod script;
mod serve;
mod slack;
mod slack_escaping;
mod slack_socket;
mod store;
mod store_bounds;
mod support;
mod tidy;
mod workflows;
