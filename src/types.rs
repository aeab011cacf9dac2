//! Domain types, parsed once at the edge and trusted inside.

use crate::error::ApiError;

/// A login name: 1–64 characters, no control characters or white space.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(String);

impl UserName {
    /// Enforced with RFC 8265's UsernameCasePreserved profile (the `precis-profiles` crate):
    /// full-width forms are mapped to their ASCII twins and the result NFC-normalised, so one name
    /// has one spelling before uniqueness is checked; spaces, controls, noncharacters (U+FFFF),
    /// bidi controls (U+202E) and zero-width characters are refused. Case is preserved, as before:
    /// `Cam-1` and `cam-1` stay two names.
    pub fn parse(s: &str) -> Result<UserName, ApiError> {
        UserName::parse_cow(std::borrow::Cow::Borrowed(s))
    }

    /// [`UserName::parse`] of a name that may be owned already: kept as it is when the profile
    /// keeps it, without a copy.
    fn parse_cow(s: std::borrow::Cow<'_, str>) -> Result<UserName, ApiError> {
        use precis_core::profile::Profile;
        // Printable ASCII without the space is what the profile keeps as it is (no width
        // mapping, already NFC, all of it IdentifierClass, no right-to-left character), so the
        // common case skips the Unicode tables; `ascii_names_are_what_the_profile_makes_them`
        // checks the shortcut against the profile.
        if (1..=64).contains(&s.len()) && s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Ok(UserName(s.into_owned()));
        }
        check_length("user_name", &s, 1, 64)?;
        let enforced = precis_profiles::UsernameCasePreserved::new()
            .enforce(&*s)
            .map_err(|e| {
                ApiError::Params(format!(
                    "user_name is not a valid user name (RFC 8265 UsernameCasePreserved): {e}"
                ))
            })?;
        check_length("user_name", &enforced, 1, 64)?;
        Ok(UserName(enforced.into_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UserName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password as sent by a client: 6–128 characters.
pub struct Password(String);

impl Password {
    pub fn parse(s: &str) -> Result<Password, ApiError> {
        check_length("password", s, 6, 128)?;
        Ok(Password(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(…)")
    }
}

/// `1` Phone, `2` Device, `3` Wechat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountType {
    Phone,
    Device,
    Wechat,
}

impl AccountType {
    pub fn parse(s: &str) -> Result<AccountType, ApiError> {
        match s {
            "1" => Ok(AccountType::Phone),
            "2" => Ok(AccountType::Device),
            "3" => Ok(AccountType::Wechat),
            _ => Err(ApiError::Params("type must be 1, 2 or 3".into())),
        }
    }
    pub fn from_code(c: i64) -> Option<AccountType> {
        match c {
            1 => Some(AccountType::Phone),
            2 => Some(AccountType::Device),
            3 => Some(AccountType::Wechat),
            _ => None,
        }
    }
    pub fn code(self) -> i64 {
        match self {
            AccountType::Phone => 1,
            AccountType::Device => 2,
            AccountType::Wechat => 3,
        }
    }
    /// The roster group under which a peer of this type is filed.
    pub fn group_name(self) -> &'static str {
        match self {
            AccountType::Phone => "Phone",
            AccountType::Device => "Device",
            AccountType::Wechat => "Wechat",
        }
    }
    /// Whether two types may be bound (default policy: Phone or Wechat with Device).
    pub fn may_bind(self, other: AccountType) -> bool {
        use AccountType::*;
        matches!(
            (self, other),
            (Phone, Device) | (Device, Phone) | (Wechat, Device) | (Device, Wechat)
        )
    }
}

/// Refuses `s` (the parameter `name`) unless it has `min..=max` characters.
fn check_length(name: &str, s: &str, min: usize, max: usize) -> Result<(), ApiError> {
    if (min..=max).contains(&s.chars().count()) {
        return Ok(());
    }
    Err(ApiError::Params(format!(
        "{name} must be {min}-{max} characters"
    )))
}

/// Parse an optional free-text field with a maximum length in characters.
pub fn bounded_text(name: &str, s: &str, min: usize, max: usize) -> Result<String, ApiError> {
    check_length(name, s, min, max)?;
    if s.chars().any(|c| c.is_control()) {
        return Err(ApiError::Params(format!(
            "{name} may not contain control characters"
        )));
    }
    Ok(s.to_owned())
}

/// Parse `user_name_ls`: a JSON array of 1..=`max` user names, sent as text holding JSON.
pub fn user_name_list(raw: &str, max: usize) -> Result<Vec<UserName>, ApiError> {
    let v: Vec<String> = serde_json::from_str(raw)
        .map_err(|_| ApiError::Params("user_name_ls must be a JSON array of strings".into()))?;
    if v.is_empty() || v.len() > max {
        return Err(ApiError::Params(format!(
            "user_name_ls must hold 1-{max} names"
        )));
    }
    let mut out: Vec<UserName> = Vec::with_capacity(v.len());
    for s in v {
        let n = UserName::parse_cow(s.into())?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_names_are_what_the_profile_makes_them() {
        use precis_core::profile::Profile;
        let profile = precis_profiles::UsernameCasePreserved::new();
        let mut names: Vec<String> = (0x21u8..=0x7e).map(|b| (b as char).to_string()).collect();
        names.push((0x21u8..=0x7e).map(char::from).collect::<String>()[..64].to_owned());
        names.extend(["13800138000", "Cam-1", "a.b_c@d", "~!x"].map(str::to_owned));
        for n in names {
            let by_profile = profile.enforce(n.as_str()).unwrap();
            assert_eq!(UserName::parse(&n).unwrap().as_str(), by_profile, "{n:?}");
        }
    }

    #[test]
    fn user_names() {
        assert!(UserName::parse("13800138000").is_ok());
        assert!(UserName::parse("").is_err());
        assert!(UserName::parse("a b").is_err());
        assert!(UserName::parse("a\u{0}b").is_err());
        assert!(UserName::parse(&"x".repeat(64)).is_ok());
        assert!(UserName::parse(&"x".repeat(65)).is_err());
        assert!(UserName::parse("名字").is_ok());
        // Refused with 2: a noncharacter, bidi overrides, zero-width characters.
        for bad in [
            "cam\u{FFFF}",
            "cam\u{202E}1",
            "ca\u{200B}m",
            "cam\u{2066}x",
            "\u{FEFF}cam",
        ] {
            let e = UserName::parse(bad).unwrap_err();
            assert_eq!(e.code(), 2, "{bad:?}: {e}");
        }
        // One spelling per name: full-width forms become ASCII, NFC is applied, case is kept.
        assert_eq!(UserName::parse("１３８００").unwrap().as_str(), "13800");
        assert_eq!(UserName::parse("Cam-ｘ").unwrap().as_str(), "Cam-x");
        assert_eq!(UserName::parse("e\u{301}").unwrap().as_str(), "\u{e9}");
        assert_ne!(UserName::parse("Cam").unwrap().as_str(), "cam");
    }

    #[test]
    fn passwords_and_types() {
        assert!(Password::parse("12345").is_err());
        assert!(Password::parse("123456").is_ok());
        assert!(Password::parse(&"p".repeat(129)).is_err());
        assert_eq!(AccountType::parse("2").unwrap(), AccountType::Device);
        assert!(AccountType::parse("4").is_err());
        assert!(AccountType::Phone.may_bind(AccountType::Device));
        assert!(!AccountType::Phone.may_bind(AccountType::Wechat));
        assert!(!AccountType::Device.may_bind(AccountType::Device));
    }

    #[test]
    fn name_lists() {
        let l = user_name_list(r#"["a","b","a"]"#, 100).unwrap();
        assert_eq!(l.len(), 2);
        assert!(user_name_list("[]", 100).is_err());
        assert!(user_name_list("a,b", 100).is_err());
        assert!(user_name_list(r#"[1]"#, 100).is_err());
        let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
        assert!(user_name_list(&serde_json::to_string(&many).unwrap(), 100).is_err());
    }
}
