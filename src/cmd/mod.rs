//! One file per command: its parameters, its checks, its effect.
//!
//! Each command returns the reply object without `sign` (the transport signs), with `result` 0,
//! or an [`ApiError`](crate::error::ApiError) that the transport turns into `{"result": code}`.
//! Partial outcomes (bind/unbind with `failed_ls`) are replies, not errors.

pub mod bind;
pub mod cancel;
pub mod change_password;
pub mod endpoints;
pub mod get_bind_token;
pub mod get_user_banding;
pub mod get_users;
pub mod login;
pub mod logout;
pub mod register;
pub mod unbind;
pub mod verify_code;
pub mod verify_token;

use rand::Rng;

/// A generated JID node: `u` and 19 random lower-case letters and digits (nodeprep-stable,
/// not derived from the user name, which may be a phone number).
pub fn new_jid_node() -> String {
    "u".chars().chain(random_chars(19)).collect()
}

/// A generated XMPP password: 24 random letters and digits.
pub fn new_jid_password() -> String {
    random_chars(24).collect()
}

fn random_chars(n: usize) -> impl Iterator<Item = char> {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    (0..n).map(move |_| CHARS[rng.gen_range(0..CHARS.len())] as char)
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_nodes_are_valid() {
        let n = super::new_jid_node();
        assert_eq!(n.len(), 20);
        assert!(xmpp::validate_node(&n).is_ok());
        assert_ne!(n, super::new_jid_node());
        assert_eq!(super::new_jid_password().len(), 24);
    }
}
