//! Command line: `register [--config FILE] [--set section.key=value]... [run|check|user|reconcile]`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::service::audit;
use crate::service::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "register",
    version,
    about = "Registration server for XMPP phones and devices"
)]
pub struct Cli {
    /// Configuration file (default: register.toml in the working directory, if present).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Override one key, e.g. `--set http.listen=127.0.0.1:9443` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the service (the default).
    Run,
    /// Check the configuration, the database and the XMPP server (handshake, add and delete a test JID).
    Check,
    /// List, show or delete users.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Revoke access tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Finish or undo every interrupted operation now, and print what was fixed.
    Reconcile,
    /// Print the audit trail, oldest first: time, actor, action, subject, network, result, detail.
    Audit {
        /// Only events by this user or naming them.
        #[arg(long)]
        user: Option<String>,
        /// Only events since then: Unix seconds, or an age such as 30m, 24h, 7d.
        #[arg(long)]
        since: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 10_000)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Every account, one a line.
    List,
    /// One account.
    Show { name: String },
    /// Delete an account as /cancel does (bindings, JID, tokens, row).
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Revoke every access token of an account (its clients must log in again).
    Revoke { name: String },
}

/// Set up logging from the configuration (`RUST_LOG` wins when set). Lines go to stderr in
/// batches ([`crate::service::logwriter`]); keep the guard until exit: dropping it writes out the rest.
pub fn init_logging(cfg: &Config) -> crate::service::logwriter::Guard<std::io::Stderr> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let (writer, guard) = crate::service::logwriter::batched(std::io::stderr());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let _ = if cfg.log.format == "json" {
        b.json().try_init()
    } else {
        b.try_init()
    };
    guard
}

/// What the admin commands that never talk to the XMPP server need (`user list`, `user show`,
/// `token revoke` without the hand-off): the stores, opened as the service opens them, and the
/// audit trail. No secrets are loaded and no component link is started, so such a command never
/// takes the service's component name — refused with `conflict` while the instance holds it, or
/// held by the command for a moment where the server admits several connections under one name
/// (Openfire's allow_multiple) or while the instance restarts.
struct Db {
    cfg: Config,
    store: Arc<dyn crate::store::Store>,
    audit: audit::Audit,
}

impl Db {
    async fn open(cfg: Config) -> Result<Db, String> {
        if !cfg.database.is_postgres() && !cfg.data_dir.is_dir() {
            return Err(format!(
                "database: data_dir {} does not exist (has the service run with this \
                 configuration?)",
                cfg.data_dir.display()
            ));
        }
        let stores = crate::service::server::open_stores(&cfg)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Db {
            cfg,
            store: stores.store,
            audit: audit::Audit(stores.audit),
        })
    }

    fn now(&self) -> i64 {
        crate::clock::Clock::now(&crate::clock::SystemClock)
    }

    /// The bare JID of a node, as the XMPP port names it: `node@xmpp.domain`.
    fn jid_of(&self, node: &str) -> String {
        format!("{node}@{}", self.cfg.xmpp.domain)
    }
}

/// Start the app for an admin command and wait (up to the XMPP timeout) for the link.
async fn admin_app(cfg: Config) -> Result<(Arc<App>, CancellationToken), String> {
    let shutdown = CancellationToken::new();
    let app = crate::service::server::build_app(cfg, shutdown.clone())
        .await
        .map_err(|e| e.to_string())?;
    let mut w = app.xmpp.link_watch();
    let wait = Duration::from_millis(app.cfg.xmpp.timeout_ms);
    let _ = tokio::time::timeout(wait, w.wait_for(|s| *s == xmpp::LinkState::Up)).await;
    Ok((app, shutdown))
}

/// `register check`: exit 0 when everything works, 1 with a diagnosis otherwise.
pub async fn check(cfg: Config) -> i32 {
    println!("configuration: ok");
    if let Some((addr, v)) = via_instance(&cfg, "/admin/check", serde_json::json!({})).await {
        // The service runs and holds the component name: check through its link.
        let mut code = 0;
        match v["database"].as_str() {
            None => println!("database: ok (through the running instance at {addr})"),
            Some(e) => {
                println!("database: FAILED: {e}");
                code = 1;
            }
        }
        match v["xmpp"].as_str() {
            None => println!(
                "xmpp: ok (component {} attached at {}; test JID created and deleted through the \
                 running instance at {addr})",
                cfg.xmpp.component, cfg.xmpp.component_addr
            ),
            Some(e) => {
                println!("xmpp: FAILED (through the running instance at {addr}): {e}");
                if e.contains("before any form") {
                    println!("      {}", read_only_hint(&cfg.xmpp.component));
                }
                code = 1;
            }
        }
        return code;
    }
    let (app, shutdown) = match admin_app(cfg).await {
        Ok(x) => x,
        Err(e) => {
            println!("start: FAILED: {e}");
            return 1;
        }
    };
    let mut code = 0;
    match app.store.ping().await {
        Ok(()) => println!(
            "database: ok ({})",
            app.cfg.data_dir.join("register.db").display()
        ),
        Err(e) => {
            println!("database: FAILED: {e}");
            code = 1;
        }
    }
    if app.xmpp.link_state() != xmpp::LinkState::Up {
        let err = app
            .xmpp
            .last_link_error()
            .unwrap_or_else(|| "no answer".into());
        println!(
            "xmpp: FAILED: component link to {} not up: {err}",
            app.cfg.xmpp.component_addr
        );
        println!("      {}", diagnose_link(&app.cfg.xmpp, &err));
        shutdown.cancel();
        return 1;
    }
    match app.xmpp.probe().await {
        Ok(()) => println!(
            "xmpp: ok (component {} attached at {}; test JID created and deleted)",
            app.cfg.xmpp.component, app.cfg.xmpp.component_addr
        ),
        Err(e) if e.to_string().contains("before any form") => {
            println!("xmpp: FAILED: {e}");
            println!("      {}", read_only_hint(&app.cfg.xmpp.component));
            code = 1;
        }
        Err(e) => {
            println!("xmpp: FAILED: {e}");
            println!(
                "      the link is up but the server refused the test account: on Prosody list {:?} in \
                 `admins`; on ejabberd grant it the `configure` access rule; on Openfire check that \
                 the component's JID is exactly the subdomain, that xmpp.domain is Openfire's XMPP \
                 domain and that the user store is writable (not LDAP/AD or a read-only JDBC \
                 provider: Openfire then answers every add-user with `forbidden`)",
                app.cfg.xmpp.component
            );
            code = 1;
        }
    }
    shutdown.cancel();
    code
}

/// The hint when add-user is refused at its first step, before any form (nothing was created).
fn read_only_hint(component: &str) -> String {
    format!(
        "the server refuses add-user to {component:?} outright. On Openfire that means a \
         read-only user store (AddUser.hasPermission): provider.user.className is LdapUserProvider, \
         JDBCUserProvider (always read-only) or a HybridUserProvider without a writable provider; \
         set it to org.jivesoftware.openfire.user.DefaultUserProvider (or give HybridUserProvider \
         DefaultUserProvider as one of hybridUserProvider.*Provider.className). On Prosody list \
         the component in `admins`; on ejabberd grant it the `configure` access rule"
    )
}

fn diagnose_link(x: &crate::service::config::XmppSection, err: &str) -> String {
    if err.contains("not-authorized") {
        format!("the server refused the handshake: xmpp.component_secret does not match the server's secret for {:?}", x.component)
    } else if err.contains("refused at the stream header") {
        format!(
            "the server refused the component before the handshake, without saying why. On Openfire \
             look at three settings: (1) is {:?} already connected — the running service or another \
             instance? Stop it, or set xmpp.allow_multiple = true on every instance sharing the \
             name; (2) xmpp.component.permission (Server Settings > External Components): a \
             whitelist must list the subdomain, a blacklist must not; (3) a secret for the \
             subdomain, or xmpp.component.defaultSecret, must be set",
            x.component
        )
    } else if err.contains("conflict") {
        "another connection holds this component name: is the service already running? Admin commands go through the running instance when they can read its data_dir/admin-handoff (same data_dir, same user); otherwise they attach their own link".into()
    } else if err.contains("refused") || err.contains("onnect") {
        format!("nothing answers at {}: check xmpp.component_addr (Openfire 5275, Prosody/ejabberd 5347)", x.component_addr)
    } else {
        format!(
            "check that {:?} is declared as a component on the server",
            x.component
        )
    }
}

/// `register user ...`.
pub async fn user(cfg: Config, action: UserAction) -> i32 {
    if let UserAction::Delete { name } = &action {
        let body = serde_json::json!({ "name": name });
        if let Some((addr, v)) = via_instance(&cfg, "/admin/user/delete", body).await {
            return match v["error"].as_str() {
                None => {
                    println!("deleted {name} (through the running instance at {addr})");
                    0
                }
                Some(e) => report(Err(e.to_owned())),
            };
        }
    }
    // Only a delete needs the XMPP server (the account's JID goes too); a listing reads the
    // database alone.
    let name = match action {
        UserAction::Delete { name } => name,
        UserAction::List | UserAction::Show { .. } => {
            let db = match Db::open(cfg).await {
                Ok(db) => db,
                Err(e) => return report(Err(e)),
            };
            return report(match action {
                UserAction::Show { name } => show(&db, &name).await,
                _ => list(&db).await,
            });
        }
    };
    let (app, shutdown) = match admin_app(cfg).await {
        Ok(x) => x,
        Err(e) => return report(Err(e)),
    };
    let r = delete(&app, &name).await;
    shutdown.cancel();
    report(r)
}

fn report(r: Result<(), String>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

async fn list(db: &Db) -> Result<(), String> {
    let mut after = 0;
    println!("{:<24} {:<6} {:<9} jid", "user_name", "type", "state");
    loop {
        let page = db
            .store
            .list_accounts(after, 500)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.id;
        for a in &page {
            println!(
                "{:<24} {:<6} {:<9} {}",
                a.user_name,
                a.kind.code(),
                a.state.as_str(),
                db.jid_of(&a.jid_node)
            );
        }
    }
}

/// The account called `name`, or the operator's error text.
async fn named(
    store: &dyn crate::store::Store,
    name: &str,
) -> Result<crate::store::Account, String> {
    store
        .account_by_name(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no such user".to_owned())
}

async fn show(db: &Db, name: &str) -> Result<(), String> {
    let a = named(&*db.store, name).await?;
    let bindings = db
        .store
        .bindings_of(a.id)
        .await
        .map_err(|e| e.to_string())?;
    println!("user_name:   {}", a.user_name);
    println!("type:        {} ({})", a.kind.code(), a.kind.group_name());
    if let Some(d) = &a.device_type {
        println!("device_type: {d}");
    }
    println!("des:         {}", a.des);
    println!("jid:         {}", db.jid_of(&a.jid_node));
    println!("state:       {}", a.state.as_str());
    let now = db.now();
    let networks = db
        .store
        .locked_networks(a.id, now)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "locked:      {}",
        if a.locked_until > now {
            format!(
                "yes, from every network but its last login's, until {}",
                a.locked_until
            )
        } else if networks.is_empty() {
            "no".to_owned()
        } else {
            let list: Vec<String> = networks
                .iter()
                .map(|(n, until)| format!("{n} until {until}"))
                .collect();
            format!("for these client networks: {}", list.join(", "))
        }
    );
    println!("bindings:    {}", bindings.len());
    Ok(())
}

async fn delete(app: &App, name: &str) -> Result<(), String> {
    delete_account(app, name).await?;
    println!("deleted {name}");
    Ok(())
}

/// Deletes an account as /cancel does; used by `register user delete` and by the running
/// instance's `/admin/user/delete`.
pub(crate) async fn delete_account(app: &App, name: &str) -> Result<(), String> {
    let r = delete_account_now(app, name).await;
    let detail = r.clone().err().unwrap_or_default();
    let rec = audit::of_admin(app, "admin.user.delete", name, r.is_err() as i64, detail);
    app.audit.record(rec).await;
    r
}

async fn delete_account_now(app: &App, name: &str) -> Result<(), String> {
    let a = named(&*app.store, name).await?;
    crate::lifecycle::account::delete(app, &a)
        .await
        .map_err(|e| format!("{e} (left for the reconciler)"))?;
    Ok(())
}

/// Asks the running instance (named in `data_dir/admin-handoff`) to run an admin command through
/// its own component link. `None` when no instance answers there with our token: the caller then
/// opens its own link.
async fn via_instance(
    cfg: &Config,
    path: &str,
    body: serde_json::Value,
) -> Option<(String, serde_json::Value)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let handoff =
        std::fs::read_to_string(crate::adapters::admin::handoff_path(&cfg.data_dir)).ok()?;
    let mut lines = handoff.lines();
    let (addr, token) = (lines.next()?.trim().to_owned(), lines.next()?.trim());
    let connect = tokio::net::TcpStream::connect(&addr);
    let mut tcp = tokio::time::timeout(Duration::from_secs(2), connect)
        .await
        .ok()?
        .ok()?;
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.ok()?;
    // The instance runs the whole command (several XMPP round trips) before it answers.
    let wait = Duration::from_millis(cfg.xmpp.timeout_ms) * 6 + Duration::from_secs(5);
    let mut raw = Vec::new();
    tokio::time::timeout(wait, tcp.read_to_end(&mut raw))
        .await
        .ok()?
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (head, rest) = raw.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let text = if chunked {
        dechunk(rest)?
    } else {
        rest.to_owned()
    };
    Some((addr, serde_json::from_str(&text).ok()?))
}

/// The body of a chunked HTTP/1.1 response.
fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, tail) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(tail.get(..size)?);
        rest = tail.get(size + 2..)?;
    }
}

/// `register token revoke NAME`: every token of the account is revoked. A running instance (the
/// admin hand-off) does it itself, so its token cache forgets them at once; with none answering,
/// they are deleted from the database here, and a running instance that the hand-off did not
/// reach notices that write (see [`revoke`]).
pub async fn token(cfg: Config, action: TokenAction) -> i32 {
    // A running instance revokes them itself, so its token cache forgets them at once.
    let TokenAction::Revoke { name } = &action;
    let body = serde_json::json!({ "name": name });
    if let Some((addr, v)) = via_instance(&cfg, "/admin/token/revoke", body).await {
        return match v["error"].as_str() {
            None => {
                println!(
                    "revoked {} tokens of {name} (through the running instance at {addr})",
                    v["revoked"]
                );
                0
            }
            Some(e) => report(Err(e.to_owned())),
        };
    }
    // Without the hand-off: the database alone (and its change feed), never a component link.
    let db = match Db::open(cfg).await {
        Ok(db) => db,
        Err(e) => return report(Err(e)),
    };
    let r = match action {
        TokenAction::Revoke { name } => revoke(&db, &name).await,
    };
    report(r)
}

/// The revocation written here, when no running instance took the hand-off. A running instance
/// on the same SQLite file notices another process's commit within
/// [`EXTERNAL_WRITES_CHECK`](crate::store::sqlite::EXTERNAL_WRITES_CHECK) and its caches start
/// over (PostgreSQL instances hear of it through the change feed within a second), so the command
/// waits three of those before it says "revoked": by then no instance answers these tokens from
/// memory, on either database.
async fn revoke(db: &Db, name: &str) -> Result<(), String> {
    let n = revoke_tokens_in(&*db.store, &db.audit, db.now(), name).await?;
    tokio::time::sleep(crate::store::sqlite::EXTERNAL_WRITES_CHECK * 3).await;
    println!(
        "revoked {n} tokens of {name} (in the database: no running instance took the hand-off; \
         a running one stopped accepting them from memory before this line)"
    );
    Ok(())
}

/// Revokes every token of `name`: used by `register token revoke` and by the running instance's
/// `/admin/token/revoke` (whose token cache then forgets them at once).
pub(crate) async fn revoke_tokens(app: &App, name: &str) -> Result<u64, String> {
    revoke_tokens_in(&*app.store, &app.audit, app.now(), name).await
}

/// [`revoke_tokens`] on a store and audit trail: recorded at `now`.
async fn revoke_tokens_in(
    store: &dyn crate::store::Store,
    trail: &audit::Audit,
    now: i64,
    name: &str,
) -> Result<u64, String> {
    let r = revoke_tokens_now(store, name).await;
    let detail = match &r {
        Ok(n) => format!("{n} tokens revoked"),
        Err(e) => e.clone(),
    };
    let rec = audit::of_admin_at(now, "admin.token.revoke", name, r.is_err() as i64, detail);
    trail.record(rec).await;
    r
}

async fn revoke_tokens_now(store: &dyn crate::store::Store, name: &str) -> Result<u64, String> {
    let a = named(store, name).await?;
    store.revoke_tokens(a.id).await.map_err(|e| e.to_string())
}

/// `register reconcile`: progress on stderr (one line per record, with what happened to it), what
/// was fixed on stdout; exit 1 when some records are left.
pub async fn reconcile(cfg: Config) -> i32 {
    if let Some((addr, v)) = via_instance(&cfg, "/admin/reconcile", serde_json::json!({})).await {
        for line in v["progress"].as_array().into_iter().flatten() {
            eprintln!("{}", line.as_str().unwrap_or_default());
        }
        print!("{}", v["report"].as_str().unwrap_or_default());
        println!("(through the running instance at {addr})");
        return v["code"].as_i64().map_or(1, |c| c as i32);
    }
    let (app, shutdown) = match admin_app(cfg).await {
        Ok(x) => x,
        Err(e) => return report(Err(e)),
    };
    let (text, code) = reconcile_now(&app, &mut |line| eprintln!("{line}")).await;
    shutdown.cancel();
    print!("{text}");
    code
}

/// Runs the reconciler once: progress lines go to `progress`; returns the report (stdout text)
/// and the exit code. Used by `register reconcile` and the running instance's `/admin/reconcile`.
pub(crate) async fn reconcile_now(
    app: &App,
    progress: &mut (dyn FnMut(&str) + Send),
) -> (String, i32) {
    let (report, code) = reconcile_now_inner(app, progress).await;
    let detail = report.lines().next().unwrap_or("").to_owned();
    let rec = audit::of_admin(app, "admin.reconcile", "", code as i64, detail);
    app.audit.record(rec).await;
    (report, code)
}

async fn reconcile_now_inner(app: &App, progress: &mut (dyn FnMut(&str) + Send)) -> (String, i32) {
    use std::fmt::Write;
    if app.xmpp.link_state() != xmpp::LinkState::Up {
        progress(&format!(
            "warning: the component link to {} is not up ({}); records needing the XMPP server will be left",
            app.cfg.xmpp.component_addr,
            app.xmpp
                .last_link_error()
                .unwrap_or_else(|| "no answer".into())
        ));
    }
    let started = std::time::Instant::now();
    let mut left = Vec::new();
    let r = crate::lifecycle::reconcile::run_exclusive(app, app.now() + 1, &mut |rep, line| {
        progress(&format!("[{}/{}] {line}", rep.done(), rep.found));
        if line.contains(": LEFT for the next run: ") && left.len() < 20 {
            left.push(line.to_owned());
        }
    })
    .await;
    let mut out = String::new();
    match r {
        Ok(None) => {
            let _ = writeln!(
                out,
                "skipped: another instance is reconciling now (its lease is held); try again later"
            );
            (out, 1)
        }
        Ok(Some(rep)) => {
            let _ = writeln!(
                out,
                "found {} unfinished records in {:.1}s: {} repaired, {} left, {} already finished",
                rep.found,
                started.elapsed().as_secs_f64(),
                rep.repaired,
                rep.failed,
                rep.skipped
            );
            let _ = writeln!(
                out,
                "  interrupted registrations undone: {} (orphan JIDs deleted: {})",
                rep.pending_removed, rep.orphan_jids_deleted
            );
            let _ = writeln!(
                out,
                "  interrupted cancels finished:     {}",
                rep.cancels_finished
            );
            let _ = writeln!(
                out,
                "  interrupted binds rolled back:    {}",
                rep.binds_rolled_back
            );
            let _ = writeln!(
                out,
                "  interrupted unbinds finished:     {}",
                rep.unbinds_finished
            );
            for l in &left {
                let _ = writeln!(out, "  left: {l}");
            }
            if rep.failed as usize > left.len() {
                let _ = writeln!(
                    out,
                    "  left: … and {} more",
                    rep.failed as usize - left.len()
                );
            }
            (out, i32::from(rep.failed > 0))
        }
        Err(e) => (format!("error: {e}\n"), 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_http_bodies() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").as_deref(),
            Some("hello world")
        );
        assert_eq!(dechunk("5\r\nhel"), None);
    }

    /// Openfire's refusal at the stream header (header without an id, then close) is reported
    /// with the three Openfire settings that cause it, not as a missing component declaration.
    #[test]
    fn diagnoses_openfire_refusal_at_the_header() {
        let x = crate::service::config::XmppSection::default();
        let d = diagnose_link(
            &x,
            "refused at the stream header (header without an id, then closed without a stream error)",
        );
        crate::cmd::testkit::assert_contains_all(
            &d,
            &[
                "already connected",
                "xmpp.allow_multiple",
                "xmpp.component.permission",
                "xmpp.component.defaultSecret",
            ],
        );
        let d = diagnose_link(&x, "i/o: Connection refused (os error 111)");
        assert!(d.contains("nothing answers"), "{d}");
    }
}

/// `register audit`: the audit trail from the database, oldest first, one event a line.
pub async fn audit(cfg: Config, user: Option<String>, since: Option<String>, limit: u32) -> i32 {
    let now = crate::clock::Clock::now(&crate::clock::SystemClock);
    let since = match since.as_deref().map(|s| parse_since(s, now)) {
        None => 0,
        Some(Ok(t)) => t,
        Some(Err(e)) => return report(Err(e)),
    };
    let store = match crate::service::server::open_stores(&cfg).await {
        Ok(crate::service::server::Stores { audit, .. }) => audit,
        Err(e) => return report(Err(e.to_string())),
    };
    let q = crate::store::audit::AuditQuery { user, since, limit };
    let records = match store.audit_list(q).await {
        Ok(r) => r,
        Err(e) => return report(Err(e.to_string())),
    };
    println!(
        "{:<20} {:<16} {:<18} {:<16} {:<16} {:>6}  detail",
        "time (UTC)", "actor", "action", "subject", "network", "result"
    );
    // An empty column prints as `-`, so that every line splits into the same columns.
    let col = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    for r in records {
        println!(
            "{:<20} {:<16} {:<18} {:<16} {:<16} {:>6}  {}",
            utc(r.at),
            col(&r.actor),
            r.action,
            col(&r.subject),
            col(&r.network),
            r.result,
            r.detail
        );
    }
    0
}

/// `--since`: Unix seconds, or an age (`90s`, `30m`, `24h`, `7d`) before `now`.
fn parse_since(s: &str, now: i64) -> Result<i64, String> {
    let bad = || format!("--since {s:?}: give Unix seconds or an age such as 30m, 24h, 7d");
    if let Ok(t) = s.parse::<i64>() {
        return Ok(t);
    }
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    Ok(now - n.saturating_mul(secs))
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian calendar).
fn utc(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date, counting in 400-year eras from 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod audit_cli_tests {
    #[test]
    fn times_and_ages() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::utc(1_764_640_800), "2025-12-02T02:00:00Z");
        assert_eq!(super::parse_since("7d", 1_000_000), Ok(1_000_000 - 604_800));
        assert_eq!(super::parse_since("30m", 10_000), Ok(8_200));
        assert_eq!(super::parse_since("12345", 0), Ok(12_345));
        assert!(super::parse_since("soon", 0).is_err());
    }
}
