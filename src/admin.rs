//! The admin listener: `/healthz` (the process answers), `/readyz` (the database answers and the
//! component link is up) and `/metrics` (Prometheus text).

use std::sync::Arc;

use http_api::{Reply, Request};
use serde_json::json;

use crate::app::App;

pub struct Admin(pub Arc<App>);

impl http_api::Handler for Admin {
    fn routes(&self) -> &[&'static str] {
        &["/healthz", "/readyz", "/metrics"]
    }

    async fn handle(&self, req: Request) -> Reply {
        let app = &self.0;
        match req.path.as_str() {
            "/healthz" => Reply::Json(json!({"status": "ok"})),
            "/readyz" => {
                let db = app.store.ping().await.is_ok();
                let link = app.xmpp.link_state() == xmpp::LinkState::Up;
                let body = json!({"ready": db && link, "database": db, "xmpp_link": link});
                if db && link {
                    Reply::Json(body)
                } else {
                    Reply::Status(503, body)
                }
            }
            _ => {
                let (connects, failures) = app.xmpp.link_stats();
                let up = app.xmpp.link_state() == xmpp::LinkState::Up;
                Reply::Body {
                    content_type: "text/plain; version=0.0.4".into(),
                    body: app.metrics.render(up, connects, failures).into(),
                    headers: vec![],
                }
            }
        }
    }

    fn error_body(&self, status: u16) -> serde_json::Value {
        json!({"error": status})
    }
}
