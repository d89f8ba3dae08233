//! The pipeline as a library (the engine will call it this way): plan now, execute later, with
//! the registry changing in between.

use std::collections::HashMap;
use std::time::Instant;

use rollbot::cli::exit_code;
use rollbot::domain::model::{Digest, ImageRef, Reference, Tag};
use rollbot::pipeline::{
    self, Outcome, Report, RetagError, RetagFailure, RollbackRequest, RunOptions,
};
use rollbot::registry::RegistryClient;

use crate::rollback::World;
use crate::support::block_on;
use crate::support::images::Kind;

fn client(world: &World) -> (RegistryClient, ImageRef) {
    let settings = rollbot::config::load(None, &HashMap::new()).expect("defaults");
    let image = ImageRef::parse(&world.image()).expect("image");
    let client = RegistryClient::for_host(&image.registry, &settings, true).expect("client");
    (client, image)
}

fn tags(names: &[&str]) -> Vec<Tag> {
    names.iter().map(|n| Tag::parse(n).expect("tag")).collect()
}

/// `latest` of `image` back to v2, named by digest.
fn latest_to_v2(world: &World, image: ImageRef) -> RollbackRequest {
    RollbackRequest {
        image,
        target: Reference::Digest(Digest::parse(&world.v2.digest).expect("digest")),
        tags: tags(&["latest"]),
        expect_from: Vec::new(),
        target_source: None,
        prefetched: None,
    }
}

/// The retag stopped before writing anything: `latest` is still at v3.
async fn nothing_written(world: &World, client: &RegistryClient, failure: &RetagFailure) {
    assert!(!failure.is_partial());
    assert_eq!(client.requests().manifest_put, 0, "nothing written");
    assert_eq!(
        world
            .seeder
            .digest_of("acme/app", "latest")
            .await
            .as_deref(),
        Some(world.v3.digest.as_str())
    );
}

/// As after a prompt answered minutes later: the target's bytes are the plan's, but the target
/// was deleted meanwhile; the tag's PUT would put it back.
#[test]
fn a_target_deleted_after_planning_stops_the_retag_before_any_write() {
    let world = World::new(Kind::OciIndex);
    let (client, image) = client(&world);
    let request = latest_to_v2(&world, image);
    block_on(async {
        let plan = pipeline::plan(&client, &request).await.expect("plan");
        world
            .seeder
            .delete_manifest("acme/app", &world.v2.digest)
            .await;

        let failure = pipeline::retag(&client, &plan, None, |_, _| {})
            .await
            .expect_err("target gone");
        assert!(
            matches!(&failure.error, RetagError::Target { digest, .. } if digest.as_str() == world.v2.digest),
            "{:?}",
            failure.error
        );
        assert!(failure
            .error
            .to_string()
            .contains("no longer in the registry"));
        nothing_written(&world, &client, &failure).await;
        assert_eq!(
            world.seeder.digest_of("acme/app", &world.v2.digest).await,
            None,
            "not put back"
        );
    });
}

#[test]
fn a_tag_moved_after_planning_stops_the_retag_before_any_write() {
    let world = World::new(Kind::OciIndex);
    let (client, image) = client(&world);
    let request = RollbackRequest {
        image,
        target: Reference::Tag(Tag::parse("v2").expect("tag")),
        tags: tags(&["latest", "stable"]),
        expect_from: Vec::new(),
        target_source: None,
        prefetched: None,
    };
    block_on(async {
        let plan = pipeline::plan(&client, &request).await.expect("plan");
        assert_eq!(plan.target.digest.as_str(), world.v2.digest);
        // CI pushes v1 to `stable` while the rollback waits for approval.
        world.seeder.tag("acme/app", &world.v1, "stable").await;

        let failure = pipeline::retag(&client, &plan, None, |_, _| {})
            .await
            .expect_err("conflict");
        match &failure.error {
            RetagError::Conflict {
                tag,
                expected,
                found,
            } => {
                assert_eq!(tag.as_str(), "stable");
                assert_eq!(expected.as_str(), world.v3.digest);
                assert_eq!(
                    found.as_ref().map(Digest::as_str),
                    Some(world.v1.digest.as_str())
                );
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        nothing_written(&world, &client, &failure).await;
        assert_eq!(
            world
                .seeder
                .digest_of("acme/app", "stable")
                .await
                .as_deref(),
            Some(world.v1.digest.as_str())
        );

        // Through `execute` the same situation is a failed pre-check: exit 3, nothing changed.
        let plan = pipeline::plan(&client, &request).await.expect("plan again");
        world.seeder.tag("acme/app", &world.v3, "stable").await;
        let options = RunOptions {
            dry_run: false,
            rto: std::time::Duration::from_secs(900),
            checks: Vec::new(),
            hold: None,
        };
        let mut report = Report::new("rollback", &plan.image, &plan.requested, &request.tags);
        pipeline::execute(&client, &plan, &options, &mut report, &mut |_| {}).await;
        assert_eq!(report.outcome, Outcome::PrecheckFailed);
        assert_eq!(exit_code(report.outcome), 3);
        let report = report.finish(
            Outcome::PrecheckFailed,
            None,
            Instant::now(),
            options.rto,
            Some(&client),
        );
        assert_eq!(report.registry.requests.manifest_put, 0);
    });
}

#[test]
fn the_registry_cost_of_a_rollback_is_one_get_and_otherwise_heads_and_puts() {
    let world = World::new(Kind::OciIndex);
    let (client, image) = client(&world);
    let request = latest_to_v2(&world, image);
    let options = RunOptions {
        dry_run: false,
        rto: std::time::Duration::from_secs(900),
        checks: Vec::new(),
        hold: None,
    };
    let report = block_on(pipeline::run(
        &client,
        &request,
        &options,
        Instant::now(),
        |_| pipeline::Confirmation::Proceed,
        &mut |_| {},
    ));
    assert_eq!(report.outcome, Outcome::Succeeded, "{:?}", report.error);
    let requests = report.registry.requests;
    assert_eq!(requests.manifest_get, 1);
    assert_eq!(requests.manifest_put, 1);
    // plan: latest + 2 children; retag gate: latest and the target (time may have passed at
    // the prompt: a deleted target is not put back); verify: latest + 2 children (confirmed
    // after the plan, as after a prompt: the children are read again; with `--yes` they are
    // not, see tests/it/pulls.rs).
    assert_eq!(requests.manifest_head, 8);
    assert_eq!(requests.blob_head, 0);
    assert_eq!(requests.token, 0);
}
