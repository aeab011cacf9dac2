//! The domain's one error enum and its result codes.
//!
//! Every failure a request can meet is one [`ApiError`] variant; [`ApiError::code`] maps each to the
//! seed's `result` code in one exhaustive `match` with no catch-all, so adding a variant forces a
//! decision. Storage errors carry detail for the log and reach clients only as code 3.

use xmpp::XmppError;

/// A request's failure, mapped to one `result` code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("internal error: {0}")]
    Unknown(String),
    #[error("bad parameter: {0}")]
    Params(String),
    #[error("database error: {0}")]
    Db(String),
    #[error("access token missing, unknown, expired or revoked")]
    AccessToken,
    #[error("captcha answer missing, wrong, expired or used")]
    VerifyCode,
    #[error("parameter signature missing, wrong or out of window")]
    Sign,
    #[error("the XMPP server did not answer in time")]
    Timeout,
    #[error("operation not permitted: {0}")]
    NotPermitted(String),
    #[error("the XMPP server could not create the JID: {0}")]
    NewJidFail(String),
    #[error("wrong user name, password or type, or account locked")]
    UserOrPassword,
    #[error("user name taken")]
    UserExists,
    #[error("user does not exist: {0}")]
    UserNotExist(String),
    #[error("the XMPP server refused the JID or its password")]
    JidOrPassword,
    #[error("the account has no usable JID")]
    NoJid,
    #[error("the XMPP session could not be established: {0}")]
    JidNotLogin(String),
    #[error("subscription refused")]
    RosterUnsubscribe,
    #[error("already bound")]
    AlreadyInRoster,
    #[error("not bound")]
    NotInRoster,
    #[error("too many requests")]
    RateLimited,
    #[error("the password hashing queue is full")]
    Busy,
    #[error("bind token unknown, expired, used, voided or not for this pair")]
    BindToken,
    /// Another `/renew_jid_pwd` of the account is under way: try again a little later.
    #[error("a renewal of this account's XMPP password is in progress")]
    InProgress,
}

impl ApiError {
    /// The seed's `result` code.
    pub fn code(&self) -> i64 {
        match self {
            ApiError::Unknown(_) => 1,
            ApiError::Params(_) => 2,
            ApiError::Db(_) => 3,
            ApiError::AccessToken => 4,
            ApiError::VerifyCode => 5,
            ApiError::Sign => 6,
            ApiError::Timeout => 9,
            ApiError::NotPermitted(_) => 100,
            ApiError::RateLimited => 112,
            ApiError::Busy => 112,
            ApiError::NewJidFail(_) => 101,
            ApiError::UserOrPassword => 102,
            ApiError::UserExists => 103,
            ApiError::UserNotExist(_) => 104,
            ApiError::JidOrPassword => 105,
            ApiError::NoJid => 106,
            ApiError::JidNotLogin(_) => 107,
            ApiError::RosterUnsubscribe => 108,
            ApiError::AlreadyInRoster => 109,
            ApiError::NotInRoster => 110,
            ApiError::BindToken => 111,
            ApiError::InProgress => 112,
        }
    }

    /// Map an XMPP failure met while provisioning a JID (register).
    pub fn from_provisioning(e: XmppError) -> ApiError {
        match e {
            XmppError::Timeout => ApiError::Timeout,
            other => ApiError::NewJidFail(other.to_string()),
        }
    }

    /// Map an XMPP failure met while binding, unbinding or reading a roster.
    pub fn from_roster(e: XmppError) -> ApiError {
        match e {
            XmppError::Timeout => ApiError::Timeout,
            XmppError::LinkDown => ApiError::JidNotLogin("component link down".into()),
            XmppError::AuthFailed => ApiError::JidOrPassword,
            XmppError::SessionFailed(s) => ApiError::JidNotLogin(s),
            XmppError::SubscriptionRefused => ApiError::RosterUnsubscribe,
            XmppError::AlreadyBound => ApiError::AlreadyInRoster,
            XmppError::NotBound => ApiError::NotInRoster,
            XmppError::NotFound => ApiError::NoJid,
            XmppError::InvalidInput(s) => ApiError::Params(s),
            XmppError::Conflict => ApiError::Unknown("unexpected conflict".into()),
            XmppError::Refused(s) | XmppError::Unsupported(s) | XmppError::Protocol(s) => {
                ApiError::JidNotLogin(s)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_seed() {
        assert_eq!(ApiError::Params("x".into()).code(), 2);
        assert_eq!(ApiError::UserExists.code(), 103);
        assert_eq!(ApiError::NotInRoster.code(), 110);
        assert_eq!(ApiError::BindToken.code(), 111);
        assert_eq!(ApiError::from_provisioning(XmppError::Timeout).code(), 9);
        assert_eq!(ApiError::from_provisioning(XmppError::LinkDown).code(), 101);
        assert_eq!(ApiError::from_roster(XmppError::AlreadyBound).code(), 109);
        assert_eq!(ApiError::from_roster(XmppError::AuthFailed).code(), 105);
    }
}
