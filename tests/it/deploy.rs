//! The deployment files in `deploy/` agree with rollbot: every config they ship loads with
//! rollbot's own loader (secrets from the paths the platform mounts them at), and the ports,
//! probe paths, state paths and secret names they name are the ones rollbot uses.
//!
//! The files are YAML and systemd units, read here with plain text checks (no YAML crate among
//! the dependencies); `deploy/ci/validate-deploy.sh` checks them against the Kubernetes and
//! Compose schemas and with `systemd-analyze`.

use std::collections::HashMap;
use std::path::Path;

use rollbot::daemon::ServeSettings;

use crate::support::daemon::{TestDaemon, USERS};

fn deploy_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The value of a `key: value` line (trimmed; quotes and a list's `- ` removed).
fn yaml_value(line: &str, key: &str) -> Option<String> {
    let line = line.trim().trim_start_matches("- ");
    let value = line.strip_prefix(key)?.strip_prefix(':')?.trim();
    Some(value.trim_matches('"').to_owned())
}

/// Every value of `key` in `text`, in order.
fn yaml_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| yaml_value(line, key))
        .collect()
}

/// The first value of `key` after the first line that contains `marker`.
fn yaml_value_after(text: &str, marker: &str, key: &str) -> String {
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in the file"));
    yaml_values(&text[start..], key)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {key} after {marker}"))
}

/// The literal block scalar (`key: |`) at `key`, its indentation removed.
fn yaml_block(text: &str, key: &str) -> String {
    let mut lines = text
        .lines()
        .skip_while(|line| line.trim() != format!("{key}: |"));
    let header = lines.next().unwrap_or_else(|| panic!("no block {key}: |"));
    let outer = header.len() - header.trim_start().len();
    let body: Vec<&str> = lines
        .take_while(|line| line.trim().is_empty() || line.len() - line.trim_start().len() > outer)
        .collect();
    let indent = body
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .expect("a non-empty block");
    body.iter()
        .map(|line| line.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The file names a config's `*_file` keys point at under `dir` (e.g. `/run/secrets/`).
fn secret_names(toml: &str, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = toml
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            key.trim().ends_with("_file").then_some(())?;
            let path = value.trim().trim_matches('"');
            Some(
                path.strip_prefix(dir)
                    .unwrap_or_else(|| panic!("{path} is not under {dir}"))
                    .to_owned(),
            )
        })
        .collect();
    names.sort();
    names
}

/// A config that was loaded, and where it was written.
struct Loaded {
    settings: ServeSettings,
    _dir: tempfile::TempDir,
}

/// Loads `toml` the way the binary does, with its secret files (under `secret_dir`) replaced
/// by fake ones in a temporary directory and `env` as the whole environment.
fn load(toml: &str, secret_dir: &str, env: &[(&str, &str)]) -> Loaded {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake_dir = format!("{}/", dir.path().display());
    for name in secret_names(toml, secret_dir) {
        // Slack's tokens are checked for their kind.
        let prefix = match name.as_str() {
            "slack-bot-token" => "xoxb-",
            "slack-app-token" => "xapp-",
            _ => "",
        };
        let fake = format!("{prefix}fake-{name}\n");
        std::fs::write(dir.path().join(&name), fake).expect("secret");
    }
    let path = dir.path().join("rollbot.toml");
    std::fs::write(&path, toml.replace(secret_dir, &fake_dir)).expect("config");
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let settings = rollbot::config::load::<ServeSettings>(Some(&path), &env)
        .unwrap_or_else(|e| panic!("the shipped config does not load:\n{e}"));
    let problems = settings.core.serve_problems();
    assert!(
        problems.is_empty(),
        "rollbot serve refuses it: {problems:?}"
    );
    Loaded {
        settings,
        _dir: dir,
    }
}

#[test]
fn the_kubernetes_config_map_is_a_config_rollbot_serve_accepts() {
    let config_map = deploy_file("kubernetes/configmap.yaml");
    let deployment = deploy_file("kubernetes/deployment.yaml");
    let secret = deploy_file("kubernetes/secret.example.yaml");
    let toml = yaml_block(&config_map, "rollbot.toml");
    let store = yaml_value_after(&deployment, "name: ROLLBOT__STORE__PATH", "value");
    let loaded = load(
        &toml,
        "/run/secrets/rollbot/",
        &[("ROLLBOT__STORE__PATH", &store)],
    );
    let daemon = &loaded.settings.core.daemon;
    assert_eq!(
        daemon.store.location.sqlite_path(),
        Some(Path::new("/var/lib/rollbot/rollbot.db"))
    );
    assert!(loaded.settings.slack.is_some(), "Slack is the chat here");

    let mounts = yaml_values(&deployment, "mountPath");
    for dir in [
        "/etc/rollbot",
        "/run/secrets/rollbot",
        "/var/lib/rollbot",
        "/tmp",
    ] {
        assert!(mounts.iter().any(|m| m == dir), "{dir} is not mounted");
    }
    assert_eq!(
        yaml_value_after(&deployment, "name: state", "mountPath"),
        daemon
            .store
            .location
            .sqlite_path()
            .and_then(Path::parent)
            .expect("a dir")
            .display()
            .to_string(),
        "the state volume holds store.path"
    );
    assert!(
        deployment.contains(r#"args: ["--config", "/etc/rollbot/rollbot.toml", "serve"]"#),
        "the Deployment runs `rollbot --config <the ConfigMap's file> serve`"
    );
    assert_eq!(
        yaml_value_after(&deployment, "- name: config", "mountPath"),
        "/etc/rollbot"
    );
    assert_eq!(
        yaml_value_after(&deployment, "configMap:", "name"),
        yaml_value_after(&config_map, "metadata:", "name")
    );

    // Every secret file the config reads is a key of the example Secret.
    for name in secret_names(&toml, "/run/secrets/rollbot/") {
        assert!(
            secret.contains(&format!("\n  {name}: ")),
            "secret.example.yaml has no key {name}"
        );
    }
    assert_eq!(
        yaml_value_after(&deployment, "secret:", "secretName"),
        "rollbot"
    );
}

#[test]
fn the_kubernetes_ports_and_probes_are_what_rollbot_serves() {
    let config_map = deploy_file("kubernetes/configmap.yaml");
    let deployment = deploy_file("kubernetes/deployment.yaml");
    let service = deploy_file("kubernetes/service.yaml");
    let toml = yaml_block(&config_map, "rollbot.toml");
    let loaded = load(
        &toml,
        "/run/secrets/rollbot/",
        &[("ROLLBOT__STORE__PATH", "/var/lib/rollbot/rollbot.db")],
    );
    let listen = loaded.settings.core.daemon.listen;
    assert!(listen.ip().is_unspecified(), "probes come from the kubelet");
    assert_eq!(
        yaml_value_after(&deployment, "- name: http", "containerPort"),
        listen.port().to_string()
    );
    assert_eq!(yaml_value_after(&service, "ports:", "targetPort"), "http");
    for probe in ["livenessProbe:", "readinessProbe:"] {
        assert_eq!(yaml_value_after(&deployment, probe, "port"), "http");
    }
    // /readyz may wait 5 s for a registry: the probe must wait longer.
    let timeout: u32 = yaml_value_after(&deployment, "readinessProbe:", "timeoutSeconds")
        .parse()
        .expect("a number");
    assert!(timeout > 5, "readinessProbe timeoutSeconds {timeout} <= 5");
    // The drain takes at most shutdown_grace + 5 s.
    let grace: u64 = yaml_value_after(&deployment, "spec:", "terminationGracePeriodSeconds")
        .parse()
        .expect("a number");
    let drain = loaded.settings.core.daemon.shutdown_grace.as_secs() + 5;
    assert!(
        grace > drain,
        "terminationGracePeriodSeconds {grace} <= {drain}"
    );

    // The probed paths answer 200 on a running daemon (and /metrics is there too).
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("rollbot.db");
    let config = format!(
        "[store]\npath = \"{}\"\n\n[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\n{USERS}",
        db.display()
    );
    let daemon = TestDaemon::start(&config, &db);
    let live = yaml_value_after(&deployment, "livenessProbe:", "path");
    let ready = yaml_value_after(&deployment, "readinessProbe:", "path");
    assert_eq!((live.as_str(), ready.as_str()), ("/healthz", "/readyz"));
    for path in [live.as_str(), ready.as_str(), "/metrics"] {
        let (status, body) = daemon.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
    }
    assert!(daemon.stop(), "a clean drain");
}

#[test]
fn the_compose_config_loads_with_the_secrets_compose_mounts() {
    let compose = deploy_file("compose/compose.yaml");
    let toml = deploy_file("compose/rollbot.toml");
    let store = yaml_values(&compose, "ROLLBOT__STORE__PATH")
        .pop()
        .expect("ROLLBOT__STORE__PATH in compose.yaml");
    let loaded = load(&toml, "/run/secrets/", &[("ROLLBOT__STORE__PATH", &store)]);
    let daemon = &loaded.settings.core.daemon;
    assert_eq!(
        daemon.store.location.sqlite_path(),
        Some(Path::new("/var/lib/rollbot/rollbot.db"))
    );
    assert_eq!(
        yaml_value_after(&compose, "source: state", "target"),
        "/var/lib/rollbot"
    );
    assert_eq!(
        yaml_value_after(&compose, "source: ./rollbot.toml", "target"),
        "/etc/rollbot/rollbot.toml"
    );
    assert!(compose.contains(r#"command: ["--config", "/etc/rollbot/rollbot.toml", "serve"]"#));
    // Published on the host's loopback, to the port rollbot listens on.
    assert!(
        compose.contains(&format!("\"127.0.0.1:{0}:{0}\"", daemon.listen.port())),
        "compose.yaml does not publish 127.0.0.1:{0}:{0}",
        daemon.listen.port()
    );
    // Every secret file the config reads is a compose secret of the service and declared with
    // a file.
    let top = &compose[compose.rfind("\nsecrets:").expect("top-level secrets")..];
    for name in secret_names(&toml, "/run/secrets/") {
        assert!(
            compose.contains(&format!("      - {name}\n")),
            "rollbot lacks secret {name}"
        );
        assert_eq!(
            yaml_value_after(top, &format!("  {name}:"), "file"),
            format!("./secrets/{name}")
        );
    }
    // The `try` profile's registry is the one the config allowlists.
    assert!(compose.contains("image: registry:2") && compose.contains("profiles: [try]"));
    let app = loaded.settings.core.images.get("app").expect("images.app");
    assert_eq!(app.image.registry.to_string(), "registry:5000");
}

#[test]
fn the_systemd_unit_and_its_config_agree() {
    let unit = deploy_file("systemd/rollbot.service");
    let toml = deploy_file("systemd/rollbot.toml");
    let credentials = "/run/credentials/rollbot.service/";
    let setting = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
            .collect()
    };
    let environment = setting("Environment");
    let store = environment
        .iter()
        .find_map(|e| e.strip_prefix("ROLLBOT__STORE__PATH="))
        .expect("Environment=ROLLBOT__STORE__PATH=…");
    let loaded = load(&toml, credentials, &[("ROLLBOT__STORE__PATH", store)]);
    let daemon = &loaded.settings.core.daemon;
    // StateDirectory=rollbot is /var/lib/rollbot, the only writable place.
    assert_eq!(setting("StateDirectory"), ["rollbot"]);
    assert_eq!(
        daemon.store.location.sqlite_path(),
        Some(Path::new("/var/lib/rollbot/rollbot.db"))
    );
    assert!(
        daemon.listen.ip().is_loopback(),
        "a host service stays on loopback"
    );
    assert_eq!(
        setting("ExecStart"),
        ["/usr/local/bin/rollbot serve --config /etc/rollbot/rollbot.toml"]
    );
    assert_eq!(setting("ConfigurationDirectory"), ["rollbot"]);
    // Every credential the config reads is loaded by the unit, and every loaded one is read.
    let loaded_credentials: Vec<String> = setting("LoadCredential")
        .iter()
        .map(|c| {
            let (name, source) = c.split_once(':').expect("NAME:PATH");
            assert_eq!(source, format!("/etc/rollbot/credentials/{name}"));
            name.to_owned()
        })
        .collect();
    let mut sorted = loaded_credentials.clone();
    sorted.sort();
    assert_eq!(sorted, secret_names(&toml, credentials));
    // SIGTERM's drain fits in the stop timeout.
    let stop: u64 = setting("TimeoutStopSec")[0]
        .trim_end_matches('s')
        .parse()
        .expect("seconds");
    assert!(stop > daemon.shutdown_grace.as_secs() + 5);
}

#[test]
fn the_kubernetes_ha_variant_runs_two_replicas_on_postgres_within_a_disruption_budget() {
    let config_map = deploy_file("kubernetes/ha/configmap.yaml");
    let deployment = deploy_file("kubernetes/ha/deployment.yaml");
    let pdb = deploy_file("kubernetes/ha/pdb.yaml");
    let secret = deploy_file("kubernetes/ha/secret.example.yaml");
    let toml = yaml_block(&config_map, "rollbot.toml");
    let loaded = load(&toml, "/run/secrets/rollbot/", &[]);
    let store = &loaded.settings.core.daemon.store;
    match &store.location {
        rollbot::config::StoreLocation::Postgres(postgres) => {
            assert!(
                postgres.password.is_some(),
                "the password comes from the Secret"
            );
            assert_eq!(postgres.url.password(), None, "never in the URL");
        }
        other => panic!("the HA variant's store is Postgres, not {other:?}"),
    }
    assert_eq!(store.lease_ttl, std::time::Duration::from_secs(15));
    for name in secret_names(&toml, "/run/secrets/rollbot/") {
        assert!(
            secret.contains(&format!("  {name}: ")),
            "the Secret has no {name}"
        );
    }

    assert_eq!(yaml_value_after(&deployment, "spec:", "replicas"), "2");
    assert_eq!(
        yaml_value_after(&deployment, "strategy:", "type"),
        "RollingUpdate"
    );
    assert_eq!(
        yaml_value_after(&deployment, "rollingUpdate:", "maxUnavailable"),
        "0"
    );
    assert!(
        !deployment.contains("ROLLBOT__STORE__PATH")
            && !deployment.contains("persistentVolumeClaim"),
        "replicas keep no state on a volume"
    );
    assert_eq!(
        yaml_value_after(&deployment, "livenessProbe:", "path"),
        "/healthz"
    );
    assert_eq!(
        yaml_value_after(&deployment, "readinessProbe:", "path"),
        "/readyz/replica",
        "a standby must be Ready for rollouts and the budget"
    );
    let grace: u64 = yaml_value_after(&deployment, "spec:", "terminationGracePeriodSeconds")
        .parse()
        .expect("a number");
    assert!(grace > loaded.settings.core.daemon.shutdown_grace.as_secs() + 5);

    assert_eq!(yaml_value_after(&pdb, "spec:", "minAvailable"), "1");
    assert_eq!(
        yaml_value_after(&pdb, "matchLabels:", "app.kubernetes.io/name"),
        yaml_value_after(&deployment, "matchLabels:", "app.kubernetes.io/name"),
        "the budget covers the Deployment's pods"
    );
}
