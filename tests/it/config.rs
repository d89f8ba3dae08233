//! The binary judges the whole configuration for every command: core and adapter sections'
//! problems together, unknown sections refused, exit 2 before anything is touched.

use crate::support::Cli;

#[test]
fn every_command_reports_problems_of_every_section_and_unknown_sections_with_exit_2() {
    let cli = Cli::new().config(
        "[rollback]\nrto = \"soon\"\n\n[slakc]\nenabled = true\n\n[dockerhub]\nenabled = true\nusername = \"acme\"\ntoken_env = \"HUB\"\ntoken_file = \"/run/secrets/hub\"\n",
    );
    for args in [
        &[
            "rollback",
            "registry.example.com/acme/app",
            "--to",
            "v1",
            "--yes",
        ][..],
        &["gate", "registry.example.com/acme/app"][..],
        &["serve"][..],
    ] {
        let run = cli.run(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        for expected in [
            "invalid config (3 problems)",
            "rollback.rto: 'soon' is not a duration",
            "slakc: unknown section (did you mean 'slack'?) (set in ",
            "dockerhub.token_file: set either token_env or token_file, not both (set in ",
        ] {
            assert!(
                run.stderr.contains(expected),
                "{args:?}: missing {expected:?} in:\n{}",
                run.stderr
            );
        }
    }
}
