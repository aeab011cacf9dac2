//! The admin listener: `/healthz` (the process answers), `/readyz` (the database answers and the
//! component link is up) and `/metrics` (Prometheus text); and, for the CLI, `/admin/check`,
//! `/admin/user/delete` and `/admin/reconcile`, which run `register check`, `register user delete`
//! and `register reconcile` through the running instance's component link — Openfire (and every
//! server) refuses a second link for the name while the service holds it — and
//! `/admin/token/revoke` (`register token revoke`), so the instance's token cache forgets the
//! tokens at once. They need the bearer token the service writes at start, with its
//! listen address, into `data_dir/admin-handoff` (owner-only); the CLI reads it from there.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_api::{Reply, Request};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::app::App;

/// The file in `data_dir` naming the running instance's admin address and token.
pub const HANDOFF: &str = "admin-handoff";

pub struct Admin {
    pub app: Arc<App>,
    token: String,
}

impl Admin {
    /// The handler, after writing `data_dir/admin-handoff` (address, then a fresh token; mode
    /// 0600). If the file cannot be written the CLI commands fall back to their own link.
    pub fn publish(app: Arc<App>, addr: SocketAddr) -> Admin {
        let token = hex::encode(rand::random::<[u8; 32]>());
        let path = handoff_path(&app.cfg.data_dir);
        if let Err(e) = write_private(&path, &format!("{addr}\n{token}\n")) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the admin hand-off file; admin commands will open their own component link");
        }
        Admin { app, token }
    }

    fn authorized(&self, req: &Request) -> bool {
        let presented = req
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .and_then(|(_, v)| v.strip_prefix("Bearer "))
            .unwrap_or("");
        bool::from(presented.as_bytes().ct_eq(self.token.as_bytes()))
    }
}

pub fn handoff_path(data_dir: &Path) -> PathBuf {
    data_dir.join(HANDOFF)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl http_api::Handler for Admin {
    fn routes(&self) -> &[&'static str] {
        &[
            "/healthz",
            "/readyz",
            "/metrics",
            "/admin/check",
            "/admin/user/delete",
            "/admin/reconcile",
            "/admin/token/revoke",
        ]
    }

    async fn handle(&self, req: Request) -> Reply {
        let app = &self.app;
        if req.path.starts_with("/admin/") {
            if !self.authorized(&req) {
                return Reply::Status(401, json!({"error": 401}));
            }
            if req.method != http_api::Method::Post {
                return Reply::Status(405, json!({"error": 405}));
            }
        }
        match req.path.as_str() {
            "/admin/check" => {
                let database = app.store.ping().await.err().map(|e| e.to_string());
                let xmpp = app.xmpp.probe().await.err().map(|e| e.to_string());
                Reply::Json(json!({"database": database, "xmpp": xmpp}))
            }
            "/admin/reconcile" => {
                let mut progress = Vec::new();
                let (report, code) =
                    crate::service::cli::reconcile_now(app, &mut |l| progress.push(l.to_owned()))
                        .await;
                Reply::Json(json!({"report": report, "code": code, "progress": progress}))
            }
            "/admin/user/delete" => {
                let name = req.param("name").unwrap_or_default().to_owned();
                match crate::service::cli::delete_account(app, &name).await {
                    Ok(()) => Reply::Json(json!({"deleted": name})),
                    Err(e) => Reply::Json(json!({"error": e})),
                }
            }
            "/admin/token/revoke" => {
                let name = req.param("name").unwrap_or_default().to_owned();
                match crate::service::cli::revoke_tokens(app, &name).await {
                    Ok(n) => Reply::Json(json!({"revoked": n})),
                    Err(e) => Reply::Json(json!({"error": e})),
                }
            }
            "/healthz" => Reply::Json(json!({"status": "ok"})),
            "/readyz" => {
                let db = app.store.ping().await.is_ok();
                let link = app.xmpp.link_state() == xmpp::LinkState::Up;
                // A binding mode the server cannot serve (found at link-up): not ready, and why.
                let binding = app.xmpp.binding_problem();
                let ready = db && link && app.xmpp.binding_checked() && binding.is_none();
                let mut body = json!({"ready": ready, "database": db, "xmpp_link": link});
                if let Some(why) = binding {
                    body["binding"] = why.into();
                }
                if ready {
                    Reply::Json(body)
                } else {
                    Reply::Status(503, body)
                }
            }
            _ => {
                let (connects, failures) = app.xmpp.link_stats();
                let up = app.xmpp.link_state() == xmpp::LinkState::Up;
                let scrape = crate::service::metrics::Scrape {
                    link_up: up,
                    link_connects: connects,
                    link_failures: failures,
                    hash_queue: app.hasher.queued(),
                };
                Reply::Body {
                    content_type: crate::service::metrics::CONTENT_TYPE.into(),
                    body: app.metrics.render(scrape).into(),
                    headers: vec![],
                }
            }
        }
    }

    fn error_body(&self, status: u16) -> serde_json::Value {
        json!({"error": status})
    }
}
