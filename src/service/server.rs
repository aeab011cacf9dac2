//! Startup and shutdown: one function builds the [`App`], binds the three listeners and runs them
//! as named tasks under one cancellation token.
//!
//! Listeners bound to port 0 get a free port; [`Server::addrs`] tells which (the tests use this).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::auth::passwords::Hasher;
use crate::auth::ratelimit::RateLimiter;
use crate::clock::SystemClock;
use crate::lifecycle::port::Metered;
use crate::service::config::is_loopback;
use crate::service::config::{parse_nets, Config};
use crate::service::metrics::Metrics;
use crate::service::secrets::{self, Secrets};
use crate::store::audit::AuditStore;
use crate::store::jid_pwd::JidPwdStore;
use crate::store::nonces::NonceStore;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::Store;

/// Where the listeners ended up.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub http: SocketAddr,
    pub tcp: SocketAddr,
    pub admin: SocketAddr,
}

/// A running service.
pub struct Server {
    pub app: Arc<App>,
    pub addrs: Addrs,
    pub shutdown: CancellationToken,
    /// Ends the XMPP link; cancelled only after the listeners have drained, so in-flight requests
    /// can still reach the XMPP server.
    xmpp_stop: CancellationToken,
    tasks: JoinSet<(&'static str, std::io::Result<()>)>,
}

/// Why the service could not start (exit status 7).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

fn fail<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> StartError {
    move |e| StartError(format!("{what}: {e}"))
}

/// The XMPP side's configuration from ours.
pub fn xmpp_config(cfg: &Config) -> Result<xmpp::XmppConfig, StartError> {
    let x = &cfg.xmpp;
    Ok(xmpp::XmppConfig {
        domain: x.domain.clone(),
        component: x.component.clone(),
        component_addr: x.component_addr.clone(),
        component_secret: secrets::component_secret(cfg).map_err(fail("component secret"))?,
        c2s_addr: x.c2s_addr.clone(),
        c2s_tls: match x.c2s_tls.as_str() {
            "off" => xmpp::C2sTls::Off,
            "optional" => xmpp::C2sTls::Optional,
            _ => xmpp::C2sTls::Required,
        },
        tls_ca_file: (!x.tls_ca_file.is_empty()).then(|| x.tls_ca_file.clone().into()),
        allow_plain_without_tls: x.allow_plain_without_tls,
        accounts: if x.accounts == "ibr" {
            xmpp::AccountsMode::Ibr
        } else {
            xmpp::AccountsMode::Component
        },
        binding: if x.binding == "privileged" {
            xmpp::BindingMode::Privileged
        } else {
            xmpp::BindingMode::C2s
        },
        timeout: Duration::from_millis(x.timeout_ms),
        session_idle: Duration::from_secs(x.session_idle_secs),
        keepalive: Duration::from_secs(x.keepalive_secs.max(1)),
        allow_multiple: x.allow_multiple,
        command_sessions: x.command_sessions,
    })
}

/// The configured store: PostgreSQL when `database.url` names one (shared by several
/// instances, each hearing of the others' changes through the database), else SQLite in
/// `data_dir`; behind the token cache unless `database.token_cache_entries` is 0.
pub async fn open_store(cfg: &Config) -> Result<Arc<dyn Store>, StartError> {
    Ok(open_stores(cfg).await?.store)
}

/// The stores of one database: the [`Store`] (behind the token cache unless
/// `database.token_cache_entries` is 0), the nonces of version 2 signatures and the pending XMPP
/// passwords of `/renew_jid_pwd`. The cache needs no word from the last two: a committed
/// `jid_pwd` is an account change the database's own feed reports (`store::changes`). Also the
/// audit trail, and the token cache's probe (for its metrics) when there is a cache.
pub struct Stores {
    pub store: Arc<dyn Store>,
    pub nonces: Arc<dyn NonceStore>,
    pub jid_pwds: Arc<dyn JidPwdStore>,
    pub audit: Arc<dyn AuditStore>,
    pub cache: Option<crate::store::cache::CacheProbe>,
}

/// [`open_store`], with the other stores of the same database.
pub async fn open_stores(cfg: &Config) -> Result<Stores, StartError> {
    #[allow(clippy::type_complexity)]
    let (s, nonces, jid_pwds, audit): (
        Arc<dyn Store>,
        Arc<dyn NonceStore>,
        Arc<dyn JidPwdStore>,
        Arc<dyn AuditStore>,
    ) = if cfg.database.is_postgres() {
        // Named after the component, so that an operator tells the instances apart in
        // pg_stat_activity.
        let name = format!("register {}", cfg.xmpp.component);
        let s = PgStore::connect_as(&cfg.database.url, cfg.database.max_connections, &name)
            .await
            .map_err(fail("database"))?;
        let s = Arc::new(s);
        (s.clone(), s.clone(), s.clone(), s)
    } else {
        let s = SqliteStore::open(&cfg.data_dir.join("register.db")).map_err(fail("database"))?;
        let s = Arc::new(s);
        (s.clone(), s.clone(), s.clone(), s)
    };
    let (store, cache): (Arc<dyn Store>, _) = match cfg.database.token_cache_entries {
        0 => (s, None),
        n => {
            let cache = crate::store::cache::TokenCache::new(s, n);
            let probe = cache.probe();
            (Arc::new(cache), Some(probe))
        }
    };
    Ok(Stores {
        store,
        nonces,
        jid_pwds,
        audit,
        cache,
    })
}

/// Build the shared state: secrets, database, XMPP link (started, not awaited).
pub async fn build_app(cfg: Config, shutdown: CancellationToken) -> Result<Arc<App>, StartError> {
    let secrets = Secrets::load_or_generate(&cfg).map_err(fail("secrets"))?;
    for p in &secrets.generated {
        tracing::warn!(file = %p.display(), "generated a secret (owner-only permissions)");
    }
    let Stores {
        store,
        nonces,
        jid_pwds,
        audit,
        cache,
    } = open_stores(&cfg).await?;
    let xcfg = xmpp_config(&cfg)?;
    let metrics = Arc::new(Metrics::with_token_cache(cache));
    let xmpp = Arc::new(Metered::new(
        Arc::new(xmpp::Xmpp::start(xcfg, shutdown)),
        metrics.clone(),
    ));
    let clock = Arc::new(SystemClock);
    Ok(Arc::new(App {
        hasher: Hasher::bounded(cfg.security.hash_concurrency, cfg.security.hash_queue),
        limiter: RateLimiter::new(&cfg.security, clock.clone()),
        store,
        nonces,
        jid_pwds,
        xmpp,
        secrets,
        clock,
        metrics,
        audit: crate::service::audit::Audit(audit),
        cfg,
    }))
}

impl Server {
    /// Bind every listener and start serving.
    pub async fn start(cfg: Config) -> Result<Server, StartError> {
        let shutdown = CancellationToken::new();
        let http_cfg = http_config(&cfg)?;
        let tcp_cfg = tcp_config(&cfg)?;
        let http_l = TcpListener::bind(cfg.http.listen)
            .await
            .map_err(fail("binding http.listen"))?;
        let tcp_l = TcpListener::bind(cfg.tcp.listen)
            .await
            .map_err(fail("binding tcp.listen"))?;
        let admin_l = TcpListener::bind(cfg.admin.listen)
            .await
            .map_err(fail("binding admin.listen"))?;
        let addrs = Addrs {
            http: http_l.local_addr().map_err(fail("http address"))?,
            tcp: tcp_l.local_addr().map_err(fail("tcp address"))?,
            admin: admin_l.local_addr().map_err(fail("admin address"))?,
        };
        if !cfg.captcha.fixed_answer.is_empty() {
            tracing::warn!(
                "captcha.fixed_answer is set: every captcha has the same answer (tests only)"
            );
        }
        if cfg.binding.consent == "none" {
            tracing::warn!(
                "binding.consent = \"none\": anyone may bind any account by name, without a bind \
                 token (old clients only; see SECURITY.md)"
            );
        }
        if cfg.http.plaintext_on_the_network() {
            tracing::warn!(
                listen = %cfg.http.listen,
                "http.allow_plaintext = true: the HTTP API is plain HTTP on the network, access \
                 tokens and passwords cross it in the clear (see docs/CONFIG.md)"
            );
        }
        if cfg.tcp.plaintext_on_the_network() {
            tracing::warn!(
                listen = %cfg.tcp.listen,
                "tcp.allow_plaintext = true: the TCP API is plaintext on the network, access \
                 tokens and user data cross it in the clear (see docs/CONFIG.md)"
            );
        }
        if cfg.security.accept_v1_signatures {
            tracing::warn!(
                "security.accept_v1_signatures = true: version 1 param_sign (no method, path or \
                 nonce; replayable within its window) is accepted (old apps only; see SECURITY.md)"
            );
        }
        let xmpp_stop = CancellationToken::new();
        let app = build_app(cfg, xmpp_stop.clone()).await?;
        let mut tasks = JoinSet::new();
        let drain = Duration::from_secs(10);
        let (a, s) = (
            Arc::new(crate::adapters::http::Api::new(app.clone())),
            shutdown.clone(),
        );
        tasks.spawn(async move { ("http", http_api::serve(http_l, http_cfg, a, s, drain).await) });
        let (a, s) = (
            Arc::new(crate::adapters::tcp::LineApi::new(app.clone())),
            shutdown.clone(),
        );
        tasks.spawn(async move { ("tcp", tcp_api::serve(tcp_l, tcp_cfg, a, s).await) });
        let admin_cfg = http_api::HttpConfig {
            tls: None,
            ..http_api::HttpConfig::default()
        };
        let (a, s) = (
            Arc::new(crate::adapters::admin::Admin::publish(
                app.clone(),
                addrs.admin,
            )),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            (
                "admin",
                http_api::serve(admin_l, admin_cfg, a, s, drain).await,
            )
        });
        let (a, s) = (app.clone(), shutdown.clone());
        tasks.spawn(async move { ("reconciler", reconcile_loop(a, s).await) });
        tracing::info!(http = %addrs.http, tcp = %addrs.tcp, admin = %addrs.admin, "register started");
        Ok(Server {
            app,
            addrs,
            shutdown,
            xmpp_stop,
            tasks,
        })
    }

    /// Wait until every task has ended (after [`Server::shutdown`] is cancelled, or a failure).
    pub async fn wait(mut self) -> Result<(), StartError> {
        let mut result = Ok(());
        while let Some(r) = self.tasks.join_next().await {
            match r {
                Ok((_, Ok(()))) => {}
                Ok((name, Err(e))) => {
                    tracing::error!(task = name, error = %e, "task failed");
                    result = Err(StartError(format!("{name}: {e}")));
                    self.shutdown.cancel();
                }
                Err(e) => {
                    result = Err(StartError(format!("task: {e}")));
                    self.shutdown.cancel();
                }
            }
        }
        self.xmpp_stop.cancel();
        // Wait (bounded) until the component connection is really closed, so that whatever
        // starts next (an admin command, a restarted service) is not refused with `conflict`.
        let _ = tokio::time::timeout(Duration::from_secs(3), self.app.xmpp.stopped()).await;
        result
    }

    /// Stop accepting, let in-flight requests finish, and wait.
    pub async fn stop(self) -> Result<(), StartError> {
        self.shutdown.cancel();
        self.wait().await
    }
}

fn tcp_config(cfg: &Config) -> Result<tcp_api::TcpConfig, StartError> {
    let t = &cfg.tcp;
    let auth_token = if t.auth_token_file.is_empty() {
        None
    } else {
        let text =
            std::fs::read_to_string(&t.auth_token_file).map_err(fail("tcp.auth_token_file"))?;
        let secret = text.trim();
        if secret.chars().count() < 16 {
            return Err(StartError(
                "tcp.auth_token_file: the secret must have at least 16 characters".into(),
            ));
        }
        Some(Arc::from(secret.as_bytes()))
    };
    let tls = if t.tls {
        std::fs::create_dir_all(&cfg.data_dir).map_err(fail("data_dir"))?;
        let (cert, key) = if t.cert_file.is_empty() {
            secrets::tls_pem(cfg).map_err(fail("certificate"))?
        } else {
            (
                std::fs::read(&t.cert_file).map_err(fail("tcp.cert_file"))?,
                std::fs::read(&t.key_file).map_err(fail("tcp.key_file"))?,
            )
        };
        let server = http_api::tls_config_from_pem(&cert, &key).map_err(fail("tcp certificate"))?;
        // The line protocol is not HTTP: no ALPN.
        let mut server = (*server).clone();
        server.alpn_protocols.clear();
        Some(Arc::new(server))
    } else {
        None
    };
    if auth_token.is_none() && !t.allow.iter().all(|n| is_loopback_net(n)) {
        tracing::warn!(
            "tcp.allow admits networks beyond this host and tcp.auth_token_file is not set: any \
             host there may check tokens and list users (see docs/TCP.md)"
        );
    }
    Ok(tcp_api::TcpConfig {
        allow: parse_nets(&t.allow),
        max_connections: t.max_connections,
        idle_timeout: Duration::from_secs(t.idle_timeout_secs),
        max_line: t.max_line_bytes,
        auth_token,
        tls,
        threads: t.threads,
        ..tcp_api::TcpConfig::default()
    })
}

/// Whether an allow-list entry stays on this host.
fn is_loopback_net(n: &str) -> bool {
    match n.parse::<ipnet::IpNet>() {
        Ok(net) => is_loopback(net.network()) && is_loopback(net.broadcast()),
        Err(_) => n.parse::<std::net::IpAddr>().is_ok_and(is_loopback),
    }
}

fn http_config(cfg: &Config) -> Result<http_api::HttpConfig, StartError> {
    let tls = if cfg.http.tls {
        std::fs::create_dir_all(&cfg.data_dir).map_err(fail("data_dir"))?;
        let (cert, key) = secrets::tls_pem(cfg).map_err(fail("certificate"))?;
        Some(http_api::tls_config_from_pem(&cert, &key).map_err(fail("certificate"))?)
    } else {
        None
    };
    Ok(http_api::HttpConfig {
        tls,
        max_body: cfg.http.max_body_bytes,
        max_connections: cfg.http.max_connections,
        header_read_timeout: Duration::from_millis(cfg.http.header_timeout_ms),
        trusted_proxies: parse_nets(&cfg.http.trusted_proxies),
        security_headers: true,
        ..http_api::HttpConfig::default()
    })
}

/// Reconcile everything at start (once the link is up), then every `interval_secs` and after
/// every link outage.
async fn reconcile_loop(app: Arc<App>, shutdown: CancellationToken) -> std::io::Result<()> {
    let mut first = true;
    let interval = app.cfg.reconcile.interval_secs;
    loop {
        let wait_link = async {
            let mut w = app.xmpp.link_watch();
            let _ = w.wait_for(|s| *s == xmpp::LinkState::Up).await;
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = wait_link => {}
        }
        let before = if first {
            app.now() + 1
        } else {
            app.now() - app.cfg.reconcile.grace_secs as i64
        };
        match crate::lifecycle::reconcile::run_exclusive(&app, before, &mut |_, _| {}).await {
            Ok(None) => tracing::info!("reconciler run skipped: another instance is reconciling"),
            Ok(Some(r)) if r.found > 0 => tracing::info!(
                found = r.found,
                repaired = r.repaired,
                failed = r.failed,
                "reconciler run"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reconciler run failed"),
        }
        let _ = app.store.prune(app.now()).await;
        let kept = app.cfg.audit.retention_days.saturating_mul(86_400) as i64;
        if let Err(e) = app.audit.0.audit_prune(app.now() - kept).await {
            tracing::warn!(error = %e, "pruning the audit trail failed");
        }
        first = false;
        if interval == 0 {
            return Ok(());
        }
        // Next run after the interval, or as soon as the link is back after an outage (the
        // outage is when records are left behind).
        let link_lost = async {
            let mut w = app.xmpp.link_watch();
            let _ = w.wait_for(|s| *s == xmpp::LinkState::Down).await;
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(interval)) => {}
            _ = link_lost => tracing::info!("component link lost: reconciling when it is back"),
        }
    }
}

/// Wait for SIGINT or SIGTERM.
pub async fn signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_entries_stay_on_this_host() {
        for yes in [
            "127.0.0.0/8",
            "127.0.0.1",
            "::1/128",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:127.0.0.0/104",
        ] {
            assert!(is_loopback_net(yes), "{yes}");
        }
        for no in [
            "0.0.0.0/0",
            "10.0.0.0/8",
            "126.0.0.0/7",
            "::/0",
            "192.168.1.5",
            "::ffff:0:0/96",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_loopback_net(no), "{no}");
        }
    }

    #[test]
    fn a_missing_or_short_backend_secret_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::in_dir(dir.path());
        assert!(
            tcp_config(&cfg).unwrap().auth_token.is_none(),
            "off by default"
        );
        cfg.tcp.auth_token_file = dir.path().join("none").display().to_string();
        assert!(tcp_config(&cfg).is_err(), "missing file");
        let file = dir.path().join("secret");
        std::fs::write(&file, "short\n").unwrap();
        cfg.tcp.auth_token_file = file.display().to_string();
        assert!(tcp_config(&cfg).is_err(), "short secret");
        std::fs::write(&file, "  sixteen-chars-ok \n").unwrap();
        let t = tcp_config(&cfg).unwrap();
        assert_eq!(t.auth_token.as_deref(), Some(&b"sixteen-chars-ok"[..]));
        assert!(t.tls.is_none());
    }
}
