//! The whole configuration: the core [`Settings`] and every adapter's own settings, each read
//! beside its adapter, composed here (the one layer that knows every section) so that all
//! problems of all sections, and every unknown section, are reported at once.

use crate::chat::console::config::ConsoleSettings;
use crate::chat::slack::config::SlackSettings;
use crate::config::{ConfigProblem, Layers, Problems, Sections, Settings};
use crate::notify::config::NotifySettings;

/// Everything `rollbot serve` reads. The CLI loads it too, so a config is judged the same
/// whichever command reads it (and `rollbot hold release` finds the Docker Hub settings in it).
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// The core sections.
    pub core: Settings,
    /// `[console]`
    pub console: ConsoleSettings,
    /// `[slack]`; `None` when Slack is not enabled.
    pub slack: Option<SlackSettings>,
    /// `[github]`, `[dockerhub]`, `[notify]`, `[templates]`.
    pub notify: NotifySettings,
}

impl Sections for ServeSettings {
    fn read(layers: &Layers) -> Result<ServeSettings, Vec<ConfigProblem>> {
        let mut problems = Problems::default();
        let core = problems.section(Settings::read(layers));
        let console = problems.section(ConsoleSettings::read(layers));
        let slack = problems.section(SlackSettings::read(layers));
        let notify = problems.section(NotifySettings::read(layers));
        for unknown in layers.unknown_sections() {
            problems.push(unknown);
        }
        let settings = || {
            Some(ServeSettings {
                core: core?,
                console: console?,
                slack: slack?,
                notify: notify?,
            })
        };
        let mut settings = problems.finish(settings())?;
        // Now the adapters' tokens are read too: health checks must not see them either.
        settings.core.guard_secrets(layers);
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::{load, ConfigError};

    fn load_str(toml: &str, env: &[(&str, &str)]) -> Result<ServeSettings, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rollbot.toml");
        std::fs::write(&path, toml).expect("write");
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        load(Some(&path), &env)
    }

    #[test]
    fn every_duration_and_number_has_a_range_named_in_the_error() {
        for (toml, expected) in [
            (
                "[approvals]\nexpiry = \"8000y\"\n",
                "approvals.expiry: '8000y' is out of range: between 10s and 7days",
            ),
            (
                "[approvals]\nexpiry = \"0s\"\n",
                "approvals.expiry: '0s' is out of range",
            ),
            (
                "[rollback]\nrto = \"30d\"\n",
                "rollback.rto: '30d' is out of range: between 1s and 7days",
            ),
            (
                "[rollback]\nregistry_timeout = \"1ms\"\n",
                "rollback.registry_timeout: '1ms' is out of range: between 100ms and 10m",
            ),
            (
                "[server]\nshutdown_grace = \"2h\"\n",
                "server.shutdown_grace: '2h' is out of range",
            ),
            (
                "[slack]\nenabled = true\ngroup_cache = \"9d\"\n",
                "slack.group_cache: '9d' is out of range",
            ),
            (
                "[notify]\nretry_base = \"2h\"\n",
                "notify.retry_base: '2h' is out of range",
            ),
            (
                "[notify]\nretry_base = \"1m\"\nretry_max = \"10s\"\n",
                "notify.retry_max: must not be shorter than notify.retry_base (1m)",
            ),
            (
                "[images.app]\nimage = \"r.example.com/a/b\"\n[[images.app.checks]]\nname = \"x\"\ncommand = [\"true\"]\ntimeout = \"3h\"\n",
                "images.app.checks[0].timeout: '3h' is out of range",
            ),
            (
                "[approvals]\nrequired = 1000\n",
                "approvals.required: 1000 is not between 1 and 100",
            ),
            (
                "[limits]\ncommands_per_minute = 0\n",
                "limits.commands_per_minute: 0 is not between 1 and 100000",
            ),
            (
                "[console]\nhistory = 1000000\n",
                "console.history: 1000000 is not between 10 and 100000",
            ),
        ] {
            let text = load_str(toml, &[]).expect_err(toml).to_string();
            assert!(text.contains(expected), "{toml}: expected {expected:?} in:\n{text}");
        }
    }
}
