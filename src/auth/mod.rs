//! Authentication: who may do what. Passwords (Argon2id and the bounded hashing queue), tokens and
//! signatures (`crypto`), the captcha, and the rate limits in front of them all.

pub mod bind_token;
pub mod captcha;
pub mod crypto;
pub mod login;
pub mod passwords;
pub mod ratelimit;
