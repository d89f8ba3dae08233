//! Discord (serenity 0.12.5): the `/rollback` command with subcommands, buttons and reactions,
//! over the Gateway or as an HTTP interactions endpoint. It translates Discord payloads into
//! engine commands and engine events into Discord messages; it decides no policy.

pub mod commands;
pub mod config;
pub mod markdown;
pub mod rest;
pub mod signing;
