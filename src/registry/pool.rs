//! The registry clients of a long-running process, one per registry host, built on first use
//! and shared (the daemon's engine, readiness checks and metrics).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{RegistryClient, RegistryError};
use crate::config::Settings;
use crate::domain::model::RegistryHost;

/// Registry clients by host, shared with the HTTP server (readiness, metrics).
#[derive(Debug)]
pub struct Registries {
    settings: Arc<Settings>,
    /// Asked before every write of every client (replicas on Postgres).
    leadership: Option<Arc<crate::leadership::Leadership>>,
    clients: Mutex<HashMap<RegistryHost, Arc<RegistryClient>>>,
}

impl Registries {
    pub fn new(settings: Arc<Settings>) -> Registries {
        Registries {
            settings,
            leadership: None,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Clients that write only while `leadership` says this process leads.
    pub fn led_by(
        settings: Arc<Settings>,
        leadership: Arc<crate::leadership::Leadership>,
    ) -> Registries {
        Registries {
            leadership: Some(leadership),
            ..Registries::new(settings)
        }
    }

    /// The client for `host`, built on first use.
    ///
    /// # Errors
    /// Credentials that cannot be loaded, a client that cannot be built.
    pub fn get(&self, host: &RegistryHost) -> Result<Arc<RegistryClient>, RegistryError> {
        let mut clients = crate::lock(&self.clients);
        if let Some(client) = clients.get(host) {
            return Ok(Arc::clone(client));
        }
        let mut client = RegistryClient::for_host(host, &self.settings, false)?;
        if let Some(leadership) = &self.leadership {
            client = client.led_by(Arc::clone(leadership));
        }
        let client = Arc::new(client);
        clients.insert(host.clone(), Arc::clone(&client));
        Ok(client)
    }

    /// (host, status, count) for every client, for `/metrics`.
    pub fn statuses(&self) -> Vec<(String, u16, u64)> {
        let clients = crate::lock(&self.clients);
        let mut out: Vec<(String, u16, u64)> = clients
            .iter()
            .flat_map(|(host, client)| {
                client
                    .statuses()
                    .into_iter()
                    .map(move |(status, n)| (host.to_string(), status, n))
            })
            .collect();
        out.sort();
        out
    }
}
