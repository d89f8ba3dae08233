//! What the fake recorded, and how tests read it: injected failures, the REST calls (and
//! waiting for one), messages, threads and commands as they are now, and each interaction's
//! callbacks, response, original and follow-ups, with its deadline and token expiry.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{route_matches, Call, Failure, FakeDiscord, WAIT};

impl FakeDiscord {
    /// The next `times` calls matching `pattern` (`"PATCH /channels/*/messages/*"`: a method,
    /// or `*`, and a path whose `*` stands for one segment) get `failure` and do nothing.
    pub fn fail(&self, pattern: &str, failure: Failure, times: u32) {
        self.lock()
            .failures
            .push((pattern.to_owned(), failure, times));
    }

    pub fn clear_failures(&self) {
        self.lock().failures.clear();
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The calls matching a route pattern (as for [`FakeDiscord::fail`]).
    pub fn calls_to(&self, pattern: &str) -> Vec<Call> {
        self.lock()
            .calls
            .iter()
            .filter(|c| route_matches(pattern, &c.method, &c.path))
            .cloned()
            .collect()
    }

    /// Waits (10 s) for a call matching `pattern` that satisfies `matches`.
    pub fn wait_for(&self, pattern: &str, what: &str, matches: impl Fn(&Call) -> bool) -> Call {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(call) = self.calls_to(pattern).into_iter().find(|c| matches(c)) {
                return call;
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = self
                    .calls()
                    .iter()
                    .map(|c| format!("{} -> {} {}", c.route(), c.status, c.body))
                    .collect();
                panic!(
                    "timed out waiting for {pattern} ({what}); calls:\n{}",
                    seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (20 s) until `condition` holds.
    pub fn wait_until(&self, what: &str, condition: impl Fn(&FakeDiscord) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !condition(self) {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The visible messages of a channel or thread (not ephemeral, not deleted), oldest first,
    /// as they are now.
    pub fn messages(&self, channel: u64) -> Vec<Value> {
        self.lock()
            .messages
            .values()
            .filter(|m| m.channel_id == channel && !m.ephemeral && !m.deleted)
            .map(|m| m.json.clone())
            .collect()
    }

    /// A message as it is now (ephemeral ones included).
    pub fn message(&self, id: u64) -> Value {
        self.lock()
            .messages
            .get(&id)
            .map(|m| m.json.clone())
            .unwrap_or_else(|| panic!("no message {id}"))
    }

    /// The latest content of a message.
    pub fn content(&self, id: u64) -> String {
        self.message(id)["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The thread started from a message, if any.
    pub fn thread(&self, message: u64) -> Option<Value> {
        self.lock()
            .channels
            .get(&message)
            .and_then(|c| c.thread.clone())
    }

    /// The commands registered for a guild (bulk overwrite or single creates).
    pub fn commands(&self, guild: u64) -> Vec<Value> {
        self.lock()
            .commands
            .get(&Some(guild))
            .cloned()
            .unwrap_or_default()
    }

    /// Every callback call for an interaction, refused ones included (see `status`).
    pub fn callbacks(&self, interaction: u64) -> Vec<Call> {
        self.calls_to(&format!("POST /interactions/{interaction}/*/callback"))
    }

    /// The accepted initial response (`{"type", "data"}`).
    pub fn response(&self, interaction: u64) -> Option<Value> {
        self.lock()
            .interactions
            .get(&interaction)
            .and_then(|k| k.response.clone())
    }

    /// The original response message (type 4/5), or the component's message (type 6/7).
    pub fn original(&self, interaction: u64) -> Option<Value> {
        let state = self.lock();
        let id = state.interactions.get(&interaction)?.original?;
        state.messages.get(&id).map(|m| m.json.clone())
    }

    /// Follow-up messages of an interaction as they are now (`flags` 64 = ephemeral).
    pub fn followups(&self, interaction: u64) -> Vec<Value> {
        let state = self.lock();
        let Some(known) = state.interactions.get(&interaction) else {
            return Vec::new();
        };
        known
            .followups
            .iter()
            .filter_map(|id| state.messages.get(id))
            .map(|m| m.json.clone())
            .collect()
    }

    /// How long after delivery an interaction may get its initial response (Discord: 3 s).
    pub fn set_ack_deadline(&self, deadline: Duration) {
        self.lock().ack_deadline = deadline;
    }

    /// The interaction token's 15 minutes are over: webhook calls get 401 50027.
    pub fn expire_token(&self, interaction: u64) {
        if let Some(known) = self.lock().interactions.get_mut(&interaction) {
            known.expired = true;
        }
    }
}
