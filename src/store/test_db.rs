//! Test support, not used by the service, for the store tests beside the store and for
//! tests/service: a throwaway PostgreSQL database on the test server (`REGISTER_TEST_PG_URL`;
//! `scripts/pg-test.sh start DIR` prints one; each gets a random name, so tests run in parallel),
//! and a phone account record to insert.

use super::NewAccount;
use crate::types::AccountType;

/// A phone account `name` with JID node `node`, as registration first writes it.
pub fn phone_account(name: &str, node: &str) -> NewAccount {
    NewAccount {
        user_name: name.into(),
        kind: AccountType::Phone,
        device_type: None,
        des: String::new(),
        password_hash: "h".into(),
        jid_node: node.into(),
        jid_pwd: vec![1, 2, 3],
    }
}

/// A database of its own on the test server, dropped by [`TestDb::drop_db`].
pub struct TestDb {
    base: String,
    name: String,
    /// The URL of the new database.
    pub url: String,
}

/// A client of the server at `url` (the test server's own database), for creating and dropping.
pub async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connecting to REGISTER_TEST_PG_URL");
    tokio::spawn(conn);
    c
}

impl TestDb {
    /// A new, empty database on the server at `base`.
    pub async fn create(base: &str) -> TestDb {
        let name = format!("register_test_{:016x}", rand::random::<u64>());
        admin_client(base)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        let (prefix, _) = base.rsplit_once('/').expect("a URL with a database name");
        TestDb {
            base: base.to_owned(),
            url: format!("{prefix}/{name}"),
            name,
        }
    }

    /// Drop the database (closing whatever is still connected to it).
    pub async fn drop_db(self) {
        admin_client(&self.base)
            .await
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .expect("DROP DATABASE");
    }
}
