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

#[cfg(test)]
mod tests {
    use super::run;
    use crate::app::Call;
    use crate::cmd::testkit::Kit;

    /// The code `check_captcha` refuses `c` with.
    async fn refusal(k: &Kit, c: &Call) -> i64 {
        k.app.check_captcha(c).await.unwrap_err().code()
    }

    #[tokio::test]
    async fn a_challenge_is_answered_once_within_its_ttl() {
        let k = Kit::with(|c| c.captcha.fixed_answer = "abcde".into()).await;
        let ch = run(&k.app).await.unwrap();
        assert_eq!(ch.png[..8], *b"\x89PNG\r\n\x1a\n");
        let answer = |id: &str| {
            let mut c = k.call(&[("verify_code", "ABCDE")]);
            c.captcha_id = Some(id.to_owned());
            c
        };
        k.clock.advance(k.app.cfg.captcha.ttl_secs as i64 - 1);
        assert!(k.app.check_captcha(&answer(&ch.id)).await.is_ok());
        assert_eq!(refusal(&k, &answer(&ch.id)).await, 5);
        let late = run(&k.app).await.unwrap();
        k.clock.advance(k.app.cfg.captcha.ttl_secs as i64);
        assert_eq!(refusal(&k, &answer(&late.id)).await, 5);
        let wrong = run(&k.app).await.unwrap();
        let mut c = k.call(&[("verify_code", "zzzzz")]);
        c.captcha_id = Some(wrong.id);
        assert_eq!(refusal(&k, &c).await, 5);
    }
}
