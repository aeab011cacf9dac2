//! `register reconcile` on what a crash leaves: each kind of record, one orphan JID.

use register::store::{AccountState, BindingState};

use super::{free_port, open_bind_service, write_toml, OpenBind};
use crate::harness::ProsodyExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_command_repairs_crash_leftovers() {
    let OpenBind {
        prosody,
        dir,
        cfg,
        server,
        client: c,
    } = open_bind_service(|_| {}).await;
    let names = [
        ("cl-a", 1),
        ("cl-b", 2),
        ("cl-c", 2),
        ("cl-d", 2),
        ("cl-e", 1),
    ];
    let info = c.accounts(&names).await;
    for peer in ["cl-b", "cl-c"] {
        let r = c
            .pair("/set_user_banding", &info["cl-a"].0, "cl-a", false, peer)
            .await;
        assert_eq!(r, Ok(0));
    }
    server.stop().await.unwrap();

    // What a crash at each step would leave (the service is stopped, as after a crash).
    let store = crate::harness::direct_store(&cfg).await;
    let id = |n: &'static str| {
        let store = store.as_ref();
        async move { store.account_by_name(n).await.unwrap().unwrap() }
    };
    let (a, b, cc, d, e) = (
        id("cl-a").await,
        id("cl-b").await,
        id("cl-c").await,
        id("cl-d").await,
        id("cl-e").await,
    );
    // Register: the JID was made, the activation not written.
    store
        .set_account_state(e.id, AccountState::Pending, 1)
        .await
        .unwrap();
    // Register: the row was written, the JID never made (and its jid_pwd cannot even be opened).
    store
        .insert_pending_account(
            register::store::NewAccount {
                user_name: "cl-ghost".into(),
                kind: register::types::AccountType::Phone,
                device_type: None,
                des: String::new(),
                password_hash: "x".into(),
                jid_node: "ughost0000000000000".into(),
                jid_pwd: vec![0; 40],
            },
            1,
        )
        .await
        .unwrap();
    // Cancel: accepted, nothing remote done.
    assert!(store.begin_cancel(d.id, 1).await.unwrap());
    // Bind: bound on the server, `bound` not written; unbind: started, row not deleted.
    store
        .set_binding_state(a.id.min(b.id), a.id.max(b.id), BindingState::Binding, 1)
        .await
        .unwrap();
    store
        .set_binding_state(a.id.min(cc.id), a.id.max(cc.id), BindingState::Unbinding, 1)
        .await
        .unwrap();
    assert!(prosody.account_on_disk(&e.jid_node));
    assert!(prosody.account_on_disk(&d.jid_node));

    let toml = write_toml(dir.path(), &cfg, free_port(), free_port(), free_port());
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_register"))
            .arg("--config")
            .arg(&toml)
            .arg("reconcile")
            .env("REGISTER_XMPP__COMPONENT_SECRET", &prosody.secret)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run();
    println!("reconcile_command_repairs_crash_leftovers: `register reconcile` printed\n--- stderr\n{stderr}--- stdout\n{stdout}---");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("found 5 unfinished records"), "{stdout}");
    assert!(stdout.contains("5 repaired, 0 left"), "{stdout}");
    assert!(
        stdout.contains("undone: 2 (orphan JIDs deleted: 1)"),
        "{stdout}"
    );
    for l in [
        "cancels finished:     1",
        "binds rolled back:    1",
        "unbinds finished:     1",
    ] {
        assert!(stdout.contains(l), "{l}: {stdout}");
    }
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with('[')).count(),
        5,
        "{stderr}"
    );
    assert!(stderr.contains("[5/5]"), "{stderr}");

    // The orphan JID and the cancelled account are gone from the server, the rows are gone.
    assert!(!prosody.account_on_disk(&e.jid_node));
    assert!(!prosody.account_on_disk(&d.jid_node));
    for n in ["cl-d", "cl-e", "cl-ghost"] {
        assert!(store.account_by_name(n).await.unwrap().is_none(), "{n}");
    }
    // Both pairs are on neither roster and have no row; the three accounts still work.
    for (x, y) in [("cl-a", "cl-b"), ("cl-a", "cl-c")] {
        let (jx, px) = (&info[x].1, &info[x].2);
        let (jy, py) = (&info[y].1, &info[y].2);
        assert!(
            prosody.roster(jx, px).await.iter().all(|i| &i.jid != jy),
            "{x} keeps {y}"
        );
        assert!(
            prosody.roster(jy, py).await.iter().all(|i| &i.jid != jx),
            "{y} keeps {x}"
        );
    }
    for n in ["cl-a", "cl-b", "cl-c"] {
        assert!(prosody.can_login(&info[n].1, &info[n].2).await, "{n}");
    }
    assert!(store.bindings_of(a.id).await.unwrap().is_empty());
    let (code, stdout, _) = run();
    assert_eq!(code, Some(0));
    assert!(stdout.contains("found 0 unfinished records"), "{stdout}");
    println!("  second run: {}", stdout.lines().next().unwrap_or(""));
}
