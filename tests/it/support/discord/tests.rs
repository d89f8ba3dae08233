//! The fake Discord checked against serenity 0.12.5 itself: every payload builder deserializes
//! into serenity's types; a real serenity `Client` connects through `GET /gateway`, gets READY
//! and GUILD_CREATE, receives interactions and reactions, answers, heartbeats, resumes after a
//! close or op 7 and shuts down; a wrong token or a privileged intent ends `start()` with
//! serenity's error; REST calls through serenity's `Http` read back, and injected failures and
//! Discord's refusals arrive as the errors serenity makes of them.
//!
//! This file holds the helpers the checks share; `payloads.rs` checks the payload builders,
//! `gateway.rs` a serenity `Client` on the Gateway, `rest.rs` serenity's `Http` on the REST
//! API (429s and the configurable world included), `interactions.rs` interaction callbacks
//! and follow-ups.

mod gateway;
mod interactions;
mod payloads;
mod rest;

use serde_json::Value;
use serenity::all::{ApplicationId, ButtonStyle, CreateActionRow, CreateButton, Http, HttpBuilder};
use serenity::http::HttpError;

use super::*;

fn http(fake: &FakeDiscord, token: &str) -> Http {
    HttpBuilder::new(token)
        .proxy(&fake.base)
        .ratelimiter_disabled(true)
        .application_id(ApplicationId::new(APP_ID))
        .build()
}

/// Discord's answer inside a serenity error: (HTTP status, JSON error code, error paths).
fn refusal<T: std::fmt::Debug>(result: serenity::Result<T>) -> (u16, isize, Vec<String>) {
    match result {
        Err(serenity::Error::Http(HttpError::UnsuccessfulRequest(response))) => (
            response.status_code.as_u16(),
            response.error.code,
            response
                .error
                .errors
                .iter()
                .map(|e| e.path.clone())
                .collect(),
        ),
        other => panic!("expected Discord to refuse, got {other:?}"),
    }
}

fn parse<T: serde::de::DeserializeOwned>(value: &Value) -> T {
    serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("serenity cannot read {value:#}: {e}"))
}

fn buttons(id: &str) -> Vec<CreateActionRow> {
    vec![CreateActionRow::Buttons(vec![
        CreateButton::new(format!("approve:{id}"))
            .label("Approve")
            .style(ButtonStyle::Success),
        CreateButton::new(format!("reject:{id}"))
            .label("Reject")
            .style(ButtonStyle::Danger),
    ])]
}
