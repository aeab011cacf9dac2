//! `/verify_code`: a new captcha challenge.

use rand::RngCore;

use crate::app::App;
use crate::error::ApiError;

/// A challenge: its id (for the cookie and header) and the PNG.
pub struct Challenge {
    pub id: String,
    pub png: Vec<u8>,
}

pub async fn run(app: &App) -> Result<Challenge, ApiError> {
    let len = app.cfg.captcha.length;
    let fixed = app.cfg.captcha.fixed_answer.clone();
    let (answer, png) = tokio::task::spawn_blocking(move || {
        crate::auth::captcha::generate(len, (!fixed.is_empty()).then_some(fixed.as_str()))
    })
    .await
    .map_err(|e| ApiError::Unknown(format!("captcha task: {e}")))?
    .ok_or_else(|| ApiError::Unknown("captcha could not be drawn".into()))?;
    let mut raw = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let id = hex::encode(raw);
    let expires = app.now() + app.cfg.captcha.ttl_secs as i64;
    app.store
        .insert_captcha(id.clone(), answer, expires)
        .await?;
    app.metrics.captcha_issued();
    Ok(Challenge { id, png })
}
