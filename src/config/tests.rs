//! The core sections' tests: layering, every problem at once with its path and origin, the
//! secret rule, registries, images, log filters. (Ranges of every key, the adapters' sections and
//! unknown sections are tested where everything is composed: `daemon::config`.)

use super::*;

fn load_str(toml: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
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
fn defaults_load_on_their_own() {
    let settings = load::<Settings>(None, &HashMap::new()).expect("defaults are valid");
    assert_eq!(settings.rollback.rto, Duration::from_secs(15 * 60));
    assert_eq!(
        settings.rollback.tags,
        vec![Tag::parse("latest").expect("tag")]
    );
    assert!(settings.images.is_empty());
}

#[test]
fn environment_overrides_files_and_files_override_defaults() {
    let settings = load_str(
        "[rollback]\nrto = \"5m\"\ntags = [\"latest\", \"stable\"]\n",
        &[("ROLLBOT__ROLLBACK__RTO", "7m"), ("ROLLBOT_IGNORED", "x")],
    )
    .expect("valid");
    assert_eq!(settings.rollback.rto, Duration::from_secs(7 * 60));
    assert_eq!(settings.rollback.tags.len(), 2);
}

#[test]
fn every_problem_is_reported_at_once_with_its_path() {
    let error = load_str(
        r#"
[rollback]
rto = "soon"
tagz = ["latest"]

[registries."registry.example.com"]
password = "hunter2"
auth = "basic"
username = "bot"
password_env = "MISSING_VAR"

[images.app]
image = "acme/app"
tags = ["bad tag"]

[[images.app.checks]]
name = "x"
command = ["true", "{imgae}"]
"#,
        &[],
    )
    .expect_err("invalid");
    let text = error.to_string();
    for expected in [
        "rollback.rto: 'soon' is not a duration",
        "rollback.tagz: unknown key (did you mean 'tags'?)",
        "registries.\"registry.example.com\".password: plain-text passwords are not accepted",
        "registries.\"registry.example.com\".password_env: environment variable MISSING_VAR is not set",
        "images.app.image: image 'acme/app' is not valid",
        "images.app.tags: tag 'bad tag' is not valid",
        "images.app.checks[0]: unknown placeholder {imgae}",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(text.contains("(set in "), "origins are named:\n{text}");
    assert!(!text.contains("hunter2"), "secrets never echo:\n{text}");
}

#[test]
fn basic_auth_reads_the_password_from_env_or_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pw");
    std::fs::write(&file, "from-file\n").expect("write");
    let toml = format!(
        "[registries.\"a.example\"]\nusername = \"u\"\npassword_env = \"PW\"\n\
         [registries.\"b.example:5000\"]\nauth = \"basic\"\nusername = \"u\"\npassword_file = \"{}\"\ninsecure = true\n",
        file.display()
    );
    let settings = load_str(&toml, &[("PW", "from-env")]).expect("valid");
    let a = settings.registry(&RegistryHost::parse("a.example").expect("host"));
    let b = settings.registry(&RegistryHost::parse("b.example:5000").expect("host"));
    match (a.auth, b.auth) {
        (AuthSettings::Basic { password: pa, .. }, AuthSettings::Basic { password: pb, .. }) => {
            assert_eq!(pa.expose(), "from-env");
            assert_eq!(pb.expose(), "from-file");
        }
        other => panic!("expected basic auth, got {other:?}"),
    }
    assert!(b.insecure);
}

#[test]
fn a_docker_hub_banner_needs_an_image_on_docker_hub() {
    let error = load_str(
        "[images.app]\nimage = \"ghcr.io/acme/app\"\ndockerhub = true\n",
        &[],
    )
    .expect_err("not on Docker Hub");
    assert!(
        error
            .to_string()
            .contains("images.app.dockerhub: ghcr.io/acme/app is not on Docker Hub"),
        "{error}"
    );
    let settings = load_str(
        "[images.app]\nimage = \"docker.io/acme/app\"\ndockerhub = true\n",
        &[],
    )
    .expect("valid");
    assert_eq!(
        settings.images["app"].dockerhub.as_deref(),
        Some("acme/app")
    );
}

#[test]
fn aliases_resolve_and_unknown_ones_say_what_exists() {
    let settings = load_str(
        "[images.app]\nimage = \"registry.example.com/acme/app\"\ntags = [\"latest\", \"stable\"]\n",
        &[],
    )
    .expect("valid");
    let (image, entry) = settings.resolve_image("app").expect("alias");
    assert_eq!(image.to_string(), "registry.example.com/acme/app");
    assert_eq!(settings.floating_tags(entry, &[]).len(), 2);
    let error = settings.resolve_image("ap").expect_err("unknown");
    assert!(error.contains("configured aliases: app"), "{error}");
}

#[test]
fn log_levels_are_levels_or_target_level_directives() {
    for good in [
        "warn",
        "INFO",
        "off",
        "rollbot=debug,warn",
        "rollbot::engine=trace",
    ] {
        let toml = format!("[log]\nlevel = \"{good}\"\n");
        assert!(load_str(&toml, &[]).is_ok(), "{good} is a filter");
    }
    for bad in ["nonsense", "", "rollbot=loud", "=debug", "info,,warn"] {
        let toml = format!("[log]\nlevel = \"{bad}\"\n");
        let text = load_str(&toml, &[]).expect_err(bad).to_string();
        assert!(text.contains("log.level: '"), "{bad}: {text}");
    }
}

#[test]
fn a_config_error_knows_whether_the_daemon_logs_json() {
    let error = load_str(
        "[log]\nformat = \"json\"\n[approvals]\nexpiry = \"8000y\"\n",
        &[],
    )
    .expect_err("invalid");
    assert!(error.json_logs);
    let error = load_str("[approvals]\nexpiry = \"8000y\"\n", &[]).expect_err("invalid");
    assert!(!error.json_logs);
}

#[test]
fn serve_refuses_images_nobody_could_approve() {
    let image = "[images.app]\nimage = \"r.example.com/a/b\"\n";
    let settings = load_str(image, &[]).expect("the CLI needs no approvers");
    let problems = settings.serve_problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "approvals.approvers");
    assert!(problems[0]
        .message
        .contains("could never be approved: no approvers"));

    let too_many = format!("{image}approvers = [\"bob\"]\nrequired_approvals = 2\n");
    let problems = load_str(&too_many, &[]).expect("valid").serve_problems();
    assert_eq!(problems[0].path, "images.app.approvers");
    assert!(problems[0]
        .message
        .contains("2 approvals are required but only 1 person"));

    let fine = format!("{image}approvers = [\"bob\", \"group:sre\"]\nrequired_approvals = 2\n");
    assert!(load_str(&fine, &[])
        .expect("valid")
        .serve_problems()
        .is_empty());
}

#[test]
fn a_registry_password_follows_the_one_secret_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pw");
    std::fs::write(&file, " pass word \r\n\n").expect("write");
    let registry = |keys: &str| format!("[registries.\"r.example\"]\nusername = \"u\"\n{keys}");
    let password = |settings: &Settings| match settings
        .registry(&RegistryHost::parse("r.example").expect("host"))
        .auth
    {
        AuthSettings::Basic {
            password, source, ..
        } => (password.expose().to_owned(), source),
        other => panic!("expected basic auth, got {other:?}"),
    };

    // Trailing line breaks go, from a file and from a variable; spaces stay.
    let settings = load_str(
        &registry(&format!("password_file = \"{}\"\n", file.display())),
        &[],
    )
    .expect("file");
    assert_eq!(
        password(&settings),
        (" pass word ".to_owned(), format!("file {}", file.display()))
    );
    let settings =
        load_str(&registry("password_env = \"PW\"\n"), &[("PW", " env pw\n")]).expect("variable");
    assert_eq!(
        password(&settings),
        (" env pw".to_owned(), "environment variable PW".to_owned())
    );
    assert_eq!(
        settings.secrets().len(),
        1,
        "the password is redacted from checks"
    );

    // Both, neither, empty: errors naming the key, never the value.
    for (keys, env, expected) in [
        (
            format!("password_env = \"PW\"\npassword_file = \"{}\"\n", file.display()),
            &[("PW", "x")][..],
            "registries.\"r.example\".password_file: set either password_env or password_file, not both",
        ),
        (
            String::new(),
            &[][..],
            "registries.\"r.example\".password_env: set password_env (the name of an environment variable) or password_file (a file)",
        ),
        (
            "password_env = \"PW\"\n".to_owned(),
            &[("PW", "\n")][..],
            "registries.\"r.example\".password_env: environment variable PW is not set or empty",
        ),
    ] {
        let text = load_str(&registry(&keys), env).expect_err(expected).to_string();
        assert!(text.contains(expected), "expected {expected:?} in:\n{text}");
        assert!(!text.contains("pass word"), "{text}");
    }
}

#[test]
fn unknown_keys_are_found_at_every_depth_with_their_origin() {
    let error = load_str(
        "[registries.\"r.example\"]\ninsecur = true\n\n[images.app]\nimage = \"r.example/a/b\"\n\n[[images.app.checks]]\nname = \"x\"\ncommand = [\"true\"]\ntimout = \"5s\"\n",
        &[("ROLLBOT__LOG__LEVLE", "debug")],
    )
    .expect_err("unknown keys");
    let text = error.to_string();
    for expected in [
        "registries.\"r.example\".insecur: unknown key (did you mean 'insecure'?) (set in ",
        "images.app.checks[0].timout: unknown key (did you mean 'timeout'?) (set in ",
        "log.levle: unknown key (did you mean 'level'?) (set in the environment)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert_eq!(error.problems.len(), 3, "{text}");
}

#[test]
fn the_core_alone_leaves_the_adapters_sections_to_their_owners() {
    // `load::<Settings>` (library use) cannot know the adapters' sections, so it neither reads
    // nor refuses them; `daemon::ServeSettings`, which the binary loads, does both.
    let settings = load_str("[slack]\nenabled = true\n\n[slakc]\nx = 1\n", &[]).expect("core");
    assert!(settings.secrets().is_empty());
}

#[test]
fn values_from_the_environment_are_strings_read_as_their_type() {
    let settings = load_str(
        "[images.app]\nimage = \"r.example/a/b\"\n",
        &[
            ("ROLLBOT__ROLLBACK__TAGS", "latest, stable"),
            ("ROLLBOT__APPROVALS__REQUIRED", "2"),
            ("ROLLBOT__APPROVALS__APPROVERS", "bob,group:sre"),
            ("ROLLBOT__SERVER__ALLOW_NON_LOOPBACK", "true"),
            ("ROLLBOT__IMAGES__APP__DOCKERHUB", "false"),
        ],
    )
    .expect("valid");
    assert_eq!(settings.rollback.tags.len(), 2);
    assert_eq!(settings.daemon.approvals.required, 2);
    assert_eq!(settings.daemon.approvals.approvers.len(), 2);
    assert!(settings.daemon.allow_non_loopback);
    let error = load_str("", &[("ROLLBOT__APPROVALS__REQUIRED", "two")]).expect_err("two");
    assert!(
        error
            .to_string()
            .contains("approvals.required: expected a whole number (set in the environment)"),
        "{error}"
    );
}

#[test]
fn a_drill_rehearses_on_a_scratch_repository_never_the_image_itself() {
    let settings = load_str(
        r#"
[images.app]
image = "registry.example.com/acme/app"

[images.web]
image = "registry.example.com/acme/web"
drill_repository = "sandbox/web"
"#,
        &[],
    )
    .expect("valid");
    let drill = |alias: &str| {
        let entry = &settings.images[alias];
        settings
            .drill_image(&entry.image, Some(entry))
            .expect("a drill repository")
            .to_string()
    };
    assert_eq!(drill("app"), "registry.example.com/acme/app-rollbot-drill");
    assert_eq!(drill("web"), "registry.example.com/sandbox/web");
    let unlisted = ImageRef::parse("registry.example.com/acme/cli").expect("image");
    assert_eq!(
        settings.drill_image(&unlisted, None).map(|i| i.to_string()),
        Ok("registry.example.com/acme/cli-rollbot-drill".to_owned())
    );
    let custom =
        load_str("[rollback]\ndrill_repository_suffix = \"/drill\"\n", &[]).expect("valid");
    assert_eq!(
        custom.drill_image(&unlisted, None).map(|i| i.to_string()),
        Ok("registry.example.com/acme/cli/drill".to_owned())
    );

    let error = load_str(
        r#"
[rollback]
drill_repository_suffix = ""

[images.app]
image = "registry.example.com/acme/app"
drill_repository = "acme/app"

[images.web]
image = "registry.example.com/acme/web"
drill_repository = "Sandbox/Web"
"#,
        &[],
    )
    .expect_err("invalid");
    let text = error.to_string();
    for expected in [
        "rollback.drill_repository_suffix: '' is not a suffix of 1-64 characters",
        "images.app.drill_repository: 'acme/app' is the image's own repository",
        "images.web.drill_repository: repository 'Sandbox/Web' is not valid",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    for bad in ["-", "-drill-", "Drill", "x//y", &"x".repeat(65)] {
        let error = load_str("", &[("ROLLBOT__ROLLBACK__DRILL_REPOSITORY_SUFFIX", bad)])
            .expect_err(bad)
            .to_string();
        assert!(
            error.contains("rollback.drill_repository_suffix"),
            "{bad}: {error}"
        );
    }
}

/// (review) A drill's scratch repository is never a configured image's repository, however it
/// is named: by `drill_repository`, by the suffix, or by a Docker Hub short name that Docker Hub
/// serves from `library/` (its own image, then).
#[test]
fn a_drill_never_rehearses_on_another_configured_image_or_docker_hubs_library_alias() {
    let settings = load_str(
        r#"
[rollback]
drill_repository_suffix = "/drill"

[images.app]
image = "registry.example.com/acme/app"
drill_repository = "acme/web"

[images.web]
image = "registry.example.com/acme/web"

[images.sub]
image = "registry.example.com/acme/web/drill"

[images.nginx]
image = "docker.io/library/nginx"
drill_repository = "nginx"

[images.hub]
image = "index.docker.io/acme/hub"
drill_repository = "acme/other"

[images.other]
image = "docker.io/acme/other"
"#,
        &[],
    )
    .expect("valid");
    for alias in ["app", "web", "nginx", "hub"] {
        let entry = &settings.images[alias];
        let drill = settings.drill_image(&entry.image, Some(entry));
        assert!(drill.is_err(), "{alias}: {drill:?}");
    }
    let sub = &settings.images["sub"];
    assert_eq!(
        settings
            .drill_image(&sub.image, Some(sub))
            .map(|i| i.to_string()),
        Ok("registry.example.com/acme/web/drill/drill".to_owned())
    );
}

#[test]
fn the_store_is_a_sqlite_file_or_a_postgres_url_whose_password_is_a_secret() {
    let settings = load_str("", &[]).expect("defaults");
    assert_eq!(
        settings.daemon.store.location.sqlite_path(),
        Some(Path::new("rollbot.db"))
    );
    assert_eq!(settings.daemon.store.lease_ttl, Duration::from_secs(15));
    for (url, file) in [
        ("sqlite:///var/lib/x.db", "/var/lib/x.db"),
        ("state/x.db", "state/x.db"),
    ] {
        let settings = load_str(&format!("[store]\nurl = \"{url}\"\n"), &[]).expect(url);
        assert_eq!(
            settings.daemon.store.location.sqlite_path(),
            Some(Path::new(file))
        );
    }
    let settings = load_str(
        "[store]\nurl = \"postgres://rollbot@db.example.com:5432/rollbot?sslmode=verify-full\"\npassword_env = \"DB_PW\"\nlease_ttl = \"5s\"\n",
        &[("DB_PW", "s3cret\n")],
    )
    .expect("postgres");
    match &settings.daemon.store.location {
        StoreLocation::Postgres(postgres) => {
            assert_eq!(
                postgres.password.as_ref().map(Secret::expose),
                Some("s3cret")
            );
            assert!(!settings.daemon.store.location.display().contains("s3cret"));
        }
        other => panic!("expected Postgres, got {other:?}"),
    }
    assert_eq!(settings.daemon.store.lease_ttl, Duration::from_secs(5));

    let refused = [
        (
            "[store]\nurl = \"postgres://rollbot:hunter2@db/rollbot\"\n",
            "holds a password",
        ),
        (
            "[store]\nurl = \"mysql://db/rollbot\"\n",
            "neither a SQLite path nor a postgres:// URL",
        ),
        ("[store]\nurl = \"postgres:///rollbot\"\n", "names no host"),
        (
            "[store]\nurl = \"postgress://rollbot:hunter2@db/rollbot\"\n",
            "neither a SQLite path",
        ),
        (
            "[store]\nurl = \"postgres://rollbot@db/rollbot?password=hunter2\"\n",
            "holds a password",
        ),
        (
            "[store]\nurl = \"postgres://rollbot@db/rollbot?sslpassword=hunter2\"\n",
            "holds a password",
        ),
        (
            "[store]\npassword_env = \"DB_PW\"\n",
            "only for a postgres:// store.url",
        ),
        ("[store]\nlease_ttl = \"1s\"\n", "out of range"),
        ("[store]\nlease_ttl = \"1h\"\n", "out of range"),
    ];
    for (toml, why) in refused {
        let error = load_str(toml, &[("DB_PW", "x")])
            .expect_err(toml)
            .to_string();
        assert!(error.contains(why), "{toml}: {error}");
        assert!(
            !error.contains("hunter2"),
            "a password never shows: {error}"
        );
    }
}
