//! Prosody stopped in the middle of a stream of registrations and binds, then restarted.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{check_consistent, join, open_bind_service, wait_link, OpenBind, Stream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_stopped_mid_stream() {
    let OpenBind {
        mut prosody,
        dir: _dir,
        server,
        client,
        ..
    } = open_bind_service(|c| c.xmpp.timeout_ms = 3000).await;
    let stream = Stream::new(client.clone());
    let started = Instant::now();
    // Eight pairs a worker: at a second per refused request the stream outlasts a slow restart
    // on a loaded machine (with four it could end while the server was still away).
    let tasks = stream.spawn("ps", 5, 8);
    let caught = stream
        .fault_point(8, server.app.store.as_ref(), false)
        .await;
    let acked_before = stream.acked.load(Ordering::SeqCst);
    prosody = super::stopped(prosody).await;
    wait_link(&server, false, 20).await;
    // Requests keep coming while the server is away.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let acked_during = stream.acked.load(Ordering::SeqCst) - acked_before;
    prosody = tokio::task::spawn_blocking(move || {
        prosody.restart();
        prosody
    })
    .await
    .unwrap();
    let fault_at = started.elapsed();
    wait_link(&server, true, 30).await;
    let acked_after_restart = stream.acked.load(Ordering::SeqCst);
    join(tasks).await;

    let mut lines = Vec::new();
    let rep =
        register::lifecycle::reconcile::run(&server.app, server.app.now() + 1, &mut |_, l| {
            lines.push(l.to_owned())
        })
        .await
        .unwrap();
    for l in &lines {
        println!("  reconcile: {l}");
    }
    assert_eq!(rep.failed, 0, "{rep:?}");

    let res = std::mem::take(&mut *stream.results.lock().unwrap());
    let found = check_consistent(&prosody, server.app.store.as_ref(), &client, &res).await;
    let (regs_acked, binds_acked) = res.acked();
    println!(
        "prosody_stopped_mid_stream: {} requests; {} names registered + {} pairs bound; acknowledged {} + {}; \
         registrations acked: {} before the stop ({caught} at the stop), {} while down, {} after; \
         restart {:.1}s into the stream; refused {:?}, no reply {}",
        res.sent,
        res.registered.len(),
        res.bound.len(),
        regs_acked,
        binds_acked,
        acked_before,
        acked_during,
        regs_acked as u64 - acked_after_restart,
        fault_at.as_secs_f64(),
        res.errors,
        res.no_reply
    );
    println!("  found intact: {found:?}");
    println!("  repaired: {rep:?}");
    assert_eq!(found.accounts_intact as usize, regs_acked);
    assert_eq!(found.pairs_intact as usize, binds_acked);
    assert_eq!(found.pairs_bound_unacked, 0);
    assert!(
        !res.errors.is_empty(),
        "the fault hit no request: {:?}",
        res.errors
    );
    assert!(
        regs_acked as u64 > acked_after_restart,
        "the stream did not go on after the restart"
    );
    server.stop().await.unwrap();
}
