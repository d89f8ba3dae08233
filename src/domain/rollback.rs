//! A rollback as the daemon tracks it: its id, who is acting, time, and the state machine.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch. The engine reads time only through a `Clock`, so tests
/// control expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// `time` as milliseconds since the epoch (0 before it).
    pub fn from_system(time: std::time::SystemTime) -> Timestamp {
        Timestamp(
            time.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    pub fn plus(self, duration: std::time::Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    pub fn minus(self, duration: std::time::Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_sub(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// Milliseconds from `earlier` to `self` (0 if `earlier` is later).
    pub fn since(self, earlier: Timestamp) -> u64 {
        u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0)
    }

    /// RFC 3339, UTC, seconds.
    /// RFC 3339, UTC, seconds; clamped to 9999-12-31T23:59:59Z (RFC 3339 has four-digit
    /// years, and the formatter panics past them).
    pub fn rfc3339(self) -> String {
        const LAST_SECOND_OF_9999: u64 = 253_402_300_799;
        let secs = u64::try_from(self.0.div_euclid(1000))
            .unwrap_or(0)
            .min(LAST_SECOND_OF_9999);
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
        )
        .to_string()
    }
}

/// A chat platform rollbot talks on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    /// The built-in local chat.
    Console,
    Slack,
    Discord,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Console => "console",
            Platform::Slack => "slack",
            Platform::Discord => "discord",
        }
    }
}

/// Where a command came from and where its answers and events go: a platform and the
/// platform's channel id. Written `slack:C0123` / `console:releases` in records and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelRef {
    pub platform: Platform,
    pub id: String,
}

impl ChannelRef {
    pub fn new(platform: Platform, id: impl Into<String>) -> ChannelRef {
        ChannelRef {
            platform,
            id: id.into(),
        }
    }

    /// Parses `platform:id`.
    ///
    /// # Errors
    /// An unknown platform, or no id.
    pub fn parse(text: &str) -> Result<ChannelRef, String> {
        let (platform, id) = text
            .split_once(':')
            .ok_or_else(|| format!("'{text}' is not platform:channel"))?;
        let platform = match platform {
            "console" => Platform::Console,
            "discord" => Platform::Discord,
            "slack" => Platform::Slack,
            other => return Err(format!("'{other}' is not a chat platform rollbot knows")),
        };
        if id.is_empty() {
            return Err(format!("'{text}' names no channel"));
        }
        Ok(ChannelRef::new(platform, id))
    }
}

impl fmt::Display for ChannelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.platform.as_str(), self.id)
    }
}

impl Serialize for ChannelRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChannelRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ChannelRef::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A rollback's short id, as people type it: `rb-17` (also accepted: `17`, `#17`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RollbackId(pub i64);

impl fmt::Display for RollbackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rb-{}", self.0)
    }
}

impl FromStr for RollbackId {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text
            .strip_prefix("rb-")
            .or_else(|| text.strip_prefix('#'))
            .unwrap_or(text);
        match digits.parse::<i64>() {
            Ok(n) if n > 0 && !digits.starts_with('+') => Ok(RollbackId(n)),
            _ => Err(format!("'{text}' is not a rollback id (like rb-17)")),
        }
    }
}

/// A person acting in chat (or at the console), as the platform identifies them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The platform's stable user id (Slack `U…`, Discord snowflake, console user id).
    pub id: String,
    /// For display only; never used for decisions.
    pub name: String,
    /// Groups the platform says the user is in (Slack user groups, console groups).
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The states of a rollback. Terminal states never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Planned and waiting for approval.
    Requested,
    /// Enough approvals; about to run.
    Approved,
    Retagging,
    Verifying,
    Succeeded,
    /// The pipeline failed; the record says which tags moved.
    Failed,
    Rejected,
    Expired,
    Cancelled,
    /// The daemon stopped mid-pipeline and the registry's state did not allow finishing or
    /// resuming; the record has the registry's actual state.
    Interrupted,
}

impl State {
    pub const ALL: [State; 10] = [
        State::Requested,
        State::Approved,
        State::Retagging,
        State::Verifying,
        State::Succeeded,
        State::Failed,
        State::Rejected,
        State::Expired,
        State::Cancelled,
        State::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Requested => "requested",
            State::Approved => "approved",
            State::Retagging => "retagging",
            State::Verifying => "verifying",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Rejected => "rejected",
            State::Expired => "expired",
            State::Cancelled => "cancelled",
            State::Interrupted => "interrupted",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Succeeded
                | State::Failed
                | State::Rejected
                | State::Expired
                | State::Cancelled
                | State::Interrupted
        )
    }

    /// Holds the image: no second rollback of it may start.
    pub fn is_active(self) -> bool {
        !self.is_terminal()
    }

    /// The pipeline is (or was, when the daemon died) running.
    pub fn is_running(self) -> bool {
        matches!(self, State::Approved | State::Retagging | State::Verifying)
    }

    /// The allowed transitions. Everything else is a bug the engine refuses to persist.
    pub fn can_become(self, next: State) -> bool {
        use State::*;
        matches!(
            (self, next),
            (Requested, Approved | Rejected | Expired | Cancelled)
                | (Approved, Retagging | Failed | Interrupted)
                | (Retagging, Verifying | Failed | Interrupted)
                | (Verifying, Succeeded | Failed | Interrupted)
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse_the_way_people_type_them() {
        assert_eq!(RollbackId(17).to_string(), "rb-17");
        for text in ["rb-17", "17", "#17"] {
            assert_eq!(text.parse::<RollbackId>(), Ok(RollbackId(17)));
        }
        for bad in ["", "rb-", "rb-x", "-3", "0", "+4", "rb-17x"] {
            assert!(bad.parse::<RollbackId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_state_machine_only_moves_forward() {
        use State::*;
        let allowed = [
            (Requested, Approved),
            (Requested, Rejected),
            (Requested, Expired),
            (Requested, Cancelled),
            (Approved, Retagging),
            (Approved, Failed),
            (Approved, Interrupted),
            (Retagging, Verifying),
            (Retagging, Failed),
            (Retagging, Interrupted),
            (Verifying, Succeeded),
            (Verifying, Failed),
            (Verifying, Interrupted),
        ];
        for from in State::ALL {
            for to in State::ALL {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
            assert_eq!(State::parse(from.as_str()), Some(from));
        }
        for terminal in [Succeeded, Failed, Rejected, Expired, Cancelled, Interrupted] {
            assert!(terminal.is_terminal());
            assert!(State::ALL.iter().all(|next| !terminal.can_become(*next)));
        }
    }

    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(Timestamp(0).rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp(1_000).plus(std::time::Duration::from_secs(60)),
            Timestamp(61_000)
        );
        assert_eq!(Timestamp(5).since(Timestamp(9)), 0);
    }

    #[test]
    fn timestamps_far_in_the_future_format_without_panicking() {
        assert_eq!(Timestamp(i64::MAX).rfc3339(), "9999-12-31T23:59:59Z");
        assert_eq!(Timestamp(-5).rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp(1_795_000_000_000).rfc3339(),
            "2026-11-18T11:06:40Z"
        );
    }

    #[test]
    fn channel_references_read_and_write_the_platform_prefixed_form_records_keep() {
        let slack = ChannelRef::parse("slack:C0123").expect("slack");
        assert_eq!(slack, ChannelRef::new(Platform::Slack, "C0123"));
        assert_eq!(slack.to_string(), "slack:C0123");
        let stored: ChannelRef = serde_json::from_str("\"console:releases\"").expect("stored");
        assert_eq!(stored, ChannelRef::new(Platform::Console, "releases"));
        assert_eq!(
            serde_json::to_string(&stored).expect("json"),
            "\"console:releases\""
        );
        for bad in ["releases", "irc:general", "slack:"] {
            assert!(ChannelRef::parse(bad).is_err(), "{bad}");
        }
    }
}
