//! The whole configuration: the core [`Settings`] and every adapter's own settings, each read
//! beside its adapter, composed here (the one layer that knows every section) so that all
//! problems of all sections, and every unknown section, are reported at once.

use crate::chat::console::config::ConsoleSettings;
use crate::chat::discord::config::DiscordSettings;
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
    /// `[discord]`; `None` when Discord is not enabled.
    pub discord: Option<DiscordSettings>,
    /// `[github]`, `[dockerhub]`, `[notify]`, `[templates]`.
    pub notify: NotifySettings,
}

impl Sections for ServeSettings {
    fn read(layers: &Layers) -> Result<ServeSettings, Vec<ConfigProblem>> {
        let mut problems = Problems::default();
        let core = problems.section(Settings::read(layers));
        let console = problems.section(ConsoleSettings::read(layers));
        let slack = problems.section(SlackSettings::read(layers));
        let discord = problems.section(DiscordSettings::read(layers));
        let notify = problems.section(NotifySettings::read(layers));
        for unknown in layers.unknown_sections() {
            problems.push(unknown);
        }
        let settings = || {
            Some(ServeSettings {
                core: core?,
                console: console?,
                slack: slack?,
                discord: discord?,
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
    fn the_defaults_load_with_every_adapter_off() {
        let settings = load::<ServeSettings>(None, &HashMap::new()).expect("defaults are valid");
        assert!(settings.slack.is_none());
        assert!(settings.notify.github.is_none() && settings.notify.dockerhub.is_none());
        assert_eq!(settings.console.history, 500);
        assert!(settings.notify.templates.is_empty());
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

    #[test]
    fn problems_of_core_and_adapter_sections_are_reported_together_with_their_origins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("hub-token");
        std::fs::write(&token, "hub-secret-value\n").expect("write");
        let error = load_str(
            &format!(
                r#"
[rollback]
rto = "soon"

[slack]
enabled = true
mode = "sockets"
bot_token_file = "/nonexistent/slack-bot-token"
channels = ["releases"]

[github]
enabled = true
repository = "acme"
token_env = "GH_TOKEN"

[dockerhub]
enabled = true
username = "acme"
token_file = "{}"
api_url = "http://hub.example.com"

[console]
chanel = "ops"

[templates]
chat_sumary = "mine.md"
"#,
                token.display()
            ),
            &[
                ("GH_TOKEN", "gh-secret-value"),
                ("ROLLBOT__NOTIFY__MAX_ATTEMPTS", "0"),
            ],
        )
        .expect_err("invalid");
        let text = error.to_string();
        for expected in [
            "rollback.rto: 'soon' is not a duration",
            "slack.mode: 'sockets' is not socket or http",
            "slack.bot_token_file: cannot read /nonexistent/slack-bot-token",
            "slack.channels: 'releases' is not a Slack channel id",
            "github.repository: 'acme' is not owner/name",
            "dockerhub.api_url: 'http://hub.example.com' must be an https URL",
            "console.chanel: unknown key (did you mean 'channel'?)",
            "templates.chat_sumary: unknown key (did you mean 'chat_summary'?)",
            "notify.max_attempts: 0 is not between 1 and 100 (set in the environment)",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        let file_origins = error
            .problems
            .iter()
            .filter(|p| {
                p.origin
                    .as_deref()
                    .is_some_and(|o| o.ends_with("rollbot.toml"))
            })
            .count();
        assert_eq!(
            file_origins, 8,
            "every problem from the file names it:\n{text}"
        );
        assert!(
            !text.contains("secret-value"),
            "secrets never echo:\n{text}"
        );
    }

    #[test]
    fn unknown_sections_are_errors_with_a_suggestion() {
        let error = load_str("[slakc]\nenabled = true\n\n[frobnicate]\nx = 1\n", &[])
            .expect_err("unknown sections");
        let text = error.to_string();
        assert!(
            text.contains("slakc: unknown section (did you mean 'slack'?) (set in "),
            "{text}"
        );
        assert!(
            text.contains("frobnicate: unknown section (known sections here: rollback, log,"),
            "{text}"
        );
        let error = load_str("", &[("ROLLBOT__GITHUBB__ENABLED", "true")]).expect_err("env");
        assert!(
            error.to_string().contains(
                "githubb: unknown section (did you mean 'github'?) (set in the environment)"
            ),
            "{error}"
        );
    }

    #[test]
    fn a_disabled_adapter_has_only_its_keys_judged() {
        let error = load_str(
            "[slack]\nenabled = false\ngroup_cache = \"forever\"\nbot_tokn_env = \"X\"\n",
            &[],
        )
        .expect_err("misspelt key");
        assert_eq!(error.problems.len(), 1, "{error}");
        assert!(
            error
                .to_string()
                .contains("slack.bot_tokn_env: unknown key (did you mean 'bot_token_env'?)"),
            "{error}"
        );
        load_str(
            "[github]\nenabled = false\nrepository = \"not a repository\"\n",
            &[],
        )
        .expect("a disabled section's values are not used");
    }

    #[test]
    fn every_secret_follows_the_one_rule() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path.display().to_string()
        };
        let bot = write("bot", "xoxb-from-file\r\n");
        let app = write("app", "xapp-from-file\n\n");
        let hub = write("hub", " hub token with spaces \n");
        // A file alone replaces the default *_env; a variable keeps its spaces, loses its
        // trailing line break.
        let settings = load_str(
            &format!(
                "[slack]\nenabled = true\nbot_token_file = \"{bot}\"\napp_token_file = \"{app}\"\n\
                 [github]\nenabled = true\nrepository = \"acme/app\"\ntoken_env = \"GH\"\n\
                 [dockerhub]\nenabled = true\nusername = \"acme\"\ntoken_file = \"{hub}\"\n"
            ),
            &[("GH", " gh token \n")],
        )
        .expect("valid");
        let slack = settings.slack.as_ref().expect("slack");
        assert_eq!(slack.bot_token.expose(), "xoxb-from-file");
        assert_eq!(
            slack.app_token.as_ref().expect("app").expose(),
            "xapp-from-file"
        );
        let github = settings.notify.github.as_ref().expect("github");
        assert_eq!(github.token.expose(), " gh token ");
        let hub_settings = settings.notify.dockerhub.as_ref().expect("dockerhub");
        assert_eq!(hub_settings.token.expose(), " hub token with spaces ");
        // Every token read is redacted from health checks.
        let secrets: Vec<String> = settings
            .core
            .secrets()
            .iter()
            .map(|s| s.expose().to_owned())
            .collect();
        for token in [
            "xoxb-from-file",
            "xapp-from-file",
            " gh token ",
            " hub token with spaces ",
        ] {
            assert!(
                secrets.iter().any(|s| s == token),
                "{token:?} is not redacted"
            );
        }

        // Both chosen: an error, for an adapter as for a registry.
        let error = load_str(
            &format!("[dockerhub]\nenabled = true\nusername = \"acme\"\ntoken_env = \"HUB\"\ntoken_file = \"{hub}\"\n"),
            &[("HUB", "x")],
        )
        .expect_err("both");
        assert!(
            error
                .to_string()
                .contains("dockerhub.token_file: set either token_env or token_file, not both"),
            "{error}"
        );
        // Empty after the line breaks, and a token of the wrong kind.
        let empty = write("empty", "\n");
        let error = load_str(
            &format!("[slack]\nenabled = true\nbot_token_file = \"{empty}\"\napp_token_file = \"{bot}\"\n"),
            &[],
        )
        .expect_err("empty");
        let text = error.to_string();
        assert!(
            text.contains(&format!("slack.bot_token_file: file {empty} is empty")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "slack.app_token_file: file {bot} does not hold a xapp-… token"
            )),
            "{text}"
        );
        assert!(!text.contains("xoxb-from-file"), "{text}");
    }

    #[test]
    fn health_checks_do_not_see_the_variables_adapters_read_tokens_from() {
        let settings = load_str(
            "[images.app]\nimage = \"r.example.com/a/b\"\n[[images.app.checks]]\nname = \"x\"\ncommand = [\"true\"]\n\
             [github]\nenabled = true\nrepository = \"acme/app\"\ntoken_env = \"GH_TOKEN\"\n",
            &[("GH_TOKEN", "gh-value")],
        )
        .expect("valid");
        let check = &settings.core.images["app"].checks[0];
        assert_eq!(check.hidden_env, vec!["GH_TOKEN".to_owned()]);
        assert_eq!(check.redact.len(), 1);
        assert_eq!(check.redact[0].expose(), "gh-value");
    }
}
