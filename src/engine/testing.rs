//! Test support for the engine's unit tests: an [`Engine`] built from real parts (settings read
//! from a TOML config by `config::load`, SQLite in a temp dir, a `ManualClock`, a sink channel)
//! whose command functions tests call the way the loop's dispatch does.
//!
//! The engine is built here rather than started with `engine::start`: a test then calls one
//! command function and sees exactly what it decided (its answer, `active`, `planning`, the
//! store, the events), with no ticker racing the manual clock and no task reports processed
//! unless the test hands them over ([`Harness::next_internal`]). The loop itself is driven by
//! the daemon's integration tests (`tests/it/daemon.rs`).
//!
//! The images' registry is a loopback port nobody listens on: whatever reaches the registry
//! (planning, history, a hold, the pipeline) fails fast and for real, so tests stop where a
//! command would talk to it.

use super::*;
use crate::domain::model::Digest;

mod dispatch;

/// The clock's time when a harness is built.
pub(in crate::engine) const START: Timestamp = Timestamp(1_700_000_000_000);

/// The approval expiry [`CONFIG`] sets.
pub(in crate::engine) const EXPIRY: Duration = Duration::from_secs(10 * 60);

/// The allowlist and approvals tests start from (`{host}` is the unreachable registry):
/// - `app`, `api`: one approval by alice, bob, carol or a member of `sre`;
/// - `web`: two approvals;
/// - `nobody`: no approvers, so no request could ever be approved;
/// - `solo`: alice is the only approver, so a request by alice could never be approved;
/// - `locked`: its registry's credentials file does not exist, so no client can be built.
pub(in crate::engine) const CONFIG: &str = r#"
[approvals]
approvers = ["alice", "bob", "carol", "group:sre"]
required = 1
expiry = "10m"

[limits]
commands_per_minute = 1000
rollbacks_per_hour = 1000

[registries."{host}"]
insecure = true
auth = "anonymous"

[registries."registry.invalid"]
auth = "docker-config"
docker_config = "/nonexistent/rollbot-test/docker-config.json"

[images.app]
image = "{host}/acme/app"

[images.api]
image = "{host}/acme/api"

[images.web]
image = "{host}/acme/web"
required_approvals = 2

[images.nobody]
image = "{host}/acme/nobody"
approvers = []

[images.solo]
image = "{host}/acme/solo"
approvers = ["alice"]

[images.locked]
image = "registry.invalid/acme/locked"
"#;

/// A command's answer: given now, or by a task later (planning, history, a hold).
#[derive(Debug)]
pub(in crate::engine) enum Reply {
    Now(Answer),
    Later(oneshot::Receiver<Answer>),
}

impl Reply {
    /// What a command function returned, and the receiver of its later answer.
    pub(in crate::engine) fn of(
        decided: Option<(oneshot::Sender<Answer>, Answer)>,
        later: oneshot::Receiver<Answer>,
    ) -> Reply {
        match decided {
            Some((_, answer)) => Reply::Now(answer),
            None => Reply::Later(later),
        }
    }

    /// The answer given at once; panics when a task was to answer.
    pub(in crate::engine) fn now(self) -> Answer {
        match self {
            Reply::Now(answer) => answer,
            Reply::Later(_) => panic!("expected an answer now; the command went to a task"),
        }
    }

    /// Whether a task was started to answer.
    pub(in crate::engine) fn is_later(&self) -> bool {
        matches!(self, Reply::Later(_))
    }

    /// The answer a task sends (within 10 s); panics when it was given at once.
    pub(in crate::engine) async fn later(self) -> Answer {
        match self {
            Reply::Later(answer) => tokio::time::timeout(Duration::from_secs(10), answer)
                .await
                .expect("the task answers within 10 s")
                .expect("the task answers"),
            Reply::Now(answer) => panic!("expected a task to answer, got {answer:?} at once"),
        }
    }
}

/// An engine on real parts, and what tests look at.
pub(in crate::engine) struct Harness {
    pub(in crate::engine) engine: Engine,
    pub(in crate::engine) clock: Arc<ManualClock>,
    pub(in crate::engine) store: Store,
    pub(in crate::engine) metrics: Arc<Metrics>,
    /// What the engine's one sink received.
    events: mpsc::Receiver<Event>,
    /// What the engine's tasks reported (planning, pipeline).
    internal: mpsc::UnboundedReceiver<Internal>,
    /// The registry host of every image: a loopback port nobody listens on.
    pub(in crate::engine) host: String,
    pub(in crate::engine) dir: tempfile::TempDir,
}

impl Harness {
    /// An engine with [`CONFIG`].
    pub(in crate::engine) async fn new() -> Harness {
        Harness::with_env(&[]).await
    }

    /// An engine with [`CONFIG`] and `ROLLBOT__…` overrides.
    pub(in crate::engine) async fn with_env(env: &[(&str, &str)]) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(START));
        Harness::build(dir, unreachable_host(), clock, CONFIG, env).await
    }

    /// The same database, clock and registry after a restart with another config (`{host}`
    /// in it is the registry): what the new engine loads from the store.
    pub(in crate::engine) async fn restart(self, config: &str) -> Harness {
        let Harness {
            engine,
            clock,
            host,
            dir,
            ..
        } = self;
        drop(engine);
        Harness::build(dir, host, clock, config, &[]).await
    }

    async fn build(
        dir: tempfile::TempDir,
        host: String,
        clock: Arc<ManualClock>,
        config: &str,
        env: &[(&str, &str)],
    ) -> Harness {
        let path = dir.path().join("rollbot.toml");
        std::fs::write(&path, config.replace("{host}", &host)).expect("write config");
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let settings: Settings = crate::config::load(Some(&path), &env).expect("a valid config");
        let settings = Arc::new(settings);
        let store = Store::open(&dir.path().join("rollbot.db"))
            .await
            .expect("store");
        let active = store
            .active()
            .await
            .expect("active rollbacks")
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        let metrics = Arc::new(Metrics::default());
        let (sink, events) = mpsc::channel(64);
        let (internal_tx, internal) = mpsc::unbounded_channel();
        let limits = &settings.daemon.limits;
        let per_minute = NonZeroU32::new(limits.commands_per_minute).expect("at least 1");
        let engine = Engine {
            per_user: RateLimiter::keyed(Quota::per_minute(per_minute)),
            rollbacks: crate::engine::hourly::HourlyStarts::load(
                &store,
                clock.now(),
                limits.rollbacks_per_hour,
            )
            .await
            .expect("the starts of the last hour"),
            registries: Arc::new(Registries::new(Arc::clone(&settings))),
            settings,
            store: store.clone(),
            clock: Arc::clone(&clock) as Arc<dyn Clock>,
            metrics: Arc::clone(&metrics),
            sinks: vec![sink],
            active,
            planning: HashSet::new(),
            running: HashSet::new(),
            tasks: JoinSet::new(),
            internal_tx,
            seen_keys: HashMap::new(),
            draining: None,
            unsaved: std::sync::Mutex::new(Vec::new()),
            target_manifests: HashMap::new(),
            unpersisted: crate::engine::batch::Unpersisted::default(),
        };
        Harness {
            engine,
            clock,
            store,
            metrics,
            events,
            internal,
            host,
            dir,
        }
    }

    // ---- driving the engine ----------------------------------------------------------------

    /// Dispatches `command` from `by`, as the loop does with an [`Inbound`].
    pub(in crate::engine) async fn submit(
        &mut self,
        by: &Actor,
        command: Command,
        idempotency_key: Option<&str>,
    ) -> Reply {
        let inbound = Inbound {
            actor: by.clone(),
            channel: channel(),
            command,
            idempotency_key: idempotency_key.map(str::to_owned),
        };
        self.submit_inbound(inbound).await
    }

    pub(in crate::engine) async fn submit_inbound(&mut self, inbound: Inbound) -> Reply {
        let (reply, answer) = oneshot::channel();
        Reply::of(self.engine.inbound(inbound, reply).await, answer)
    }

    /// Dispatches chat text (which must parse) from `by`.
    pub(in crate::engine) async fn say(&mut self, by: &Actor, text: &str) -> Reply {
        let command = crate::domain::command::parse(text).expect("a command");
        self.submit(by, command, None).await
    }

    /// Text that did not parse, as the loop hands it to the engine.
    pub(in crate::engine) async fn malformed(&mut self, by: &Actor, text: &str) -> Answer {
        let error = crate::domain::command::parse(text)
            .expect_err("malformed text")
            .to_string();
        let (reply, answer) = oneshot::channel();
        self.engine
            .external(Msg::Malformed {
                actor: by.clone(),
                channel: channel(),
                text: text.to_owned(),
                error,
                reply,
            })
            .await;
        answer.await.expect("answered")
    }

    /// The chat platform posted `id`'s status message as `status_ref`.
    pub(in crate::engine) async fn status_posted(&mut self, id: RollbackId, status_ref: &str) {
        self.engine
            .external(Msg::StatusPosted {
                id,
                status_ref: status_ref.to_owned(),
            })
            .await;
    }

    /// `request()` of `image` (an alias, or `host/repo`) by `by`.
    pub(in crate::engine) async fn request(&mut self, by: &Actor, image: &str) -> Reply {
        self.ask(by, image, false).await
    }

    /// `request()` of a drill of `image` by `by`.
    pub(in crate::engine) async fn drill(&mut self, by: &Actor, image: &str) -> Reply {
        self.ask(by, image, true).await
    }

    async fn ask(&mut self, by: &Actor, image: &str, drill: bool) -> Reply {
        let name = if image.contains('/') {
            ImageName::Full(ImageRef::parse(image).expect("image"))
        } else {
            ImageName::Alias(image.to_owned())
        };
        let (reply, answer) = oneshot::channel();
        let wanted = match drill {
            true => commands::Wanted::Drill,
            false => commands::Wanted::Rollback { target: None },
        };
        let decided = self
            .engine
            .request(by.clone(), channel(), name, wanted, None, reply)
            .await;
        Reply::of(decided, answer)
    }

    /// A request of `alias` by `by` that was planned: the record the engine's own path after
    /// planning (`planned`) creates, waiting for approval. The events it emitted are taken.
    pub(in crate::engine) async fn requested(&mut self, alias: &str, by: &Actor) -> RollbackRecord {
        let image = self.engine.settings.images[alias].image.clone();
        let answer = self
            .engine
            .planned(pending(alias, &image, by), Ok(planned(&image, false)))
            .await;
        let Answer::Requested { id, .. } = answer else {
            panic!("expected a request, got {answer:?}");
        };
        self.events();
        self.engine.active[&id].clone()
    }

    /// The next report of one of the engine's tasks (within 10 s).
    pub(in crate::engine) async fn next_internal(&mut self) -> Internal {
        tokio::time::timeout(Duration::from_secs(10), self.internal.recv())
            .await
            .expect("a task reports within 10 s")
            .expect("the engine holds the sender")
    }

    // ---- looking at the results ------------------------------------------------------------

    /// The events emitted since last asked.
    pub(in crate::engine) fn events(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            events.push(event);
        }
        events
    }

    /// The kinds of the events emitted since last asked.
    pub(in crate::engine) fn event_kinds(&mut self) -> Vec<EventKind> {
        self.events().into_iter().map(|e| e.kind).collect()
    }

    /// The whole audit log, oldest first.
    pub(in crate::engine) async fn audit_log(&self) -> Vec<AuditEntry> {
        self.store
            .audit_since(Timestamp(0))
            .await
            .expect("audit log")
    }

    /// The audit log's entries of `kind`.
    pub(in crate::engine) async fn audited(&self, kind: &str) -> Vec<AuditEntry> {
        let mut entries = self.audit_log().await;
        entries.retain(|e| e.kind == kind);
        entries
    }

    /// The `refused` entries as (command, why).
    pub(in crate::engine) async fn refusals(&self) -> Vec<(String, String)> {
        self.audited("refused")
            .await
            .into_iter()
            .map(|e| {
                let field = |name: &str| e.detail[name].as_str().unwrap_or_default().to_owned();
                (field("command"), field("why"))
            })
            .collect()
    }

    /// The record as stored.
    pub(in crate::engine) async fn stored(&self, id: RollbackId) -> RollbackRecord {
        self.store.get(id).await.expect("readable").expect("stored")
    }

    /// Runs `sql` on the database file itself, beside the store (a trigger that makes one
    /// particular write fail, as a database that fails now and then would).
    pub(in crate::engine) async fn sql(&self, sql: &str) {
        let options =
            sqlx::sqlite::SqliteConnectOptions::new().filename(self.dir.path().join("rollbot.db"));
        let pool = sqlx::sqlite::SqlitePool::connect_with(options)
            .await
            .expect("the database");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&pool)
            .await
            .expect(sql);
        pool.close().await;
    }

    /// How many commands named `name` the metrics counted.
    pub(in crate::engine) fn commands_counted(&self, name: &str) -> u64 {
        let line = format!("rollbot_commands_total{{command=\"{name}\"}} ");
        self.metrics
            .render(&[])
            .lines()
            .find_map(|l| l.strip_prefix(&line).map(str::to_owned))
            .map_or(0, |n| n.parse().expect("a count"))
    }
}

/// A person; the name is the id capitalised (`alice` is "Alice").
pub(in crate::engine) fn actor(id: &str) -> Actor {
    let mut name = id.to_owned();
    name[..1].make_ascii_uppercase();
    Actor {
        id: id.to_owned(),
        name,
        groups: Vec::new(),
    }
}

/// A person in groups.
pub(in crate::engine) fn member(id: &str, groups: &[&str]) -> Actor {
    Actor {
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..actor(id)
    }
}

/// Where every test command comes from.
pub(in crate::engine) fn channel() -> ChannelRef {
    ChannelRef::new(crate::domain::rollback::Platform::Console, "releases")
}

/// A request of `alias` by `by`, as `request()` hands it to planning.
pub(in crate::engine) fn pending(alias: &str, image: &ImageRef, by: &Actor) -> PendingRequest {
    PendingRequest {
        actor: by.clone(),
        channel: channel(),
        image: image.clone(),
        alias: alias.to_owned(),
        reason: Some("bad deploy".to_owned()),
        requested_target: "the previous good build".to_owned(),
        drill: false,
    }
}

/// What planning `image` found: `latest` to move back to a small OCI image manifest (or, when
/// `noop`, already there).
pub(in crate::engine) fn planned(image: &ImageRef, noop: bool) -> Planned {
    let config = Digest::of(b"{}");
    let bytes = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[]}}"#
    );
    let target = crate::registry::oci::RawManifest::parse(bytes.into(), None).expect("manifest");
    let from = if noop {
        target.digest.clone()
    } else {
        Digest::of(b"the bad build")
    };
    Planned {
        plan: Plan {
            image: image.clone(),
            requested: Reference::Digest(target.digest.clone()),
            references: Vec::new(),
            tags: vec![crate::domain::record::PlannedTag {
                tag: Tag::parse("latest").expect("tag"),
                from,
                already_at_target: noop,
            }],
            tags_read_at: std::time::Instant::now(),
            target_read_at: std::time::Instant::now(),
            target,
        },
        target_source: Some("the rollback manifest of the bad build".to_owned()),
    }
}

/// `127.0.0.1:<port>` where nothing listens (the port was just free).
fn unreachable_host() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    format!("127.0.0.1:{port}")
}
