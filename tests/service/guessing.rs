//! Issue 18, point 1, as the attack: a burst of concurrent guesses against one account, the right
//! password in the middle of it. The lock must hold from the threshold on, whatever the order in
//! which the burst reaches the service.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{post_form, signed, Env, Opts};

const BURST: usize = 200;
const TRIALS: usize = 3;
const THRESHOLD: u32 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_guesses_with_the_right_one_inside_never_get_in() {
    let env = Env::start_tuned(Opts::default(), |c| {
        c.security.lockout_threshold = THRESHOLD;
        // The whole burst may wait for a hashing thread: none is refused for load, so every
        // answer below is the lock's (or the password's) verdict.
        c.security.hash_queue = 2 * BURST;
    })
    .await;
    let app = &env.server().app;
    for trial in 0..TRIALS {
        let name = format!("burst-{trial}");
        env.account(&name, 2).await;
        let verdicts_before = app.metrics.login_failures().0;
        let guess = |password: String| {
            let p = signed(
                "/login",
                &[
                    ("user_name", name.as_str()),
                    ("password", password.as_str()),
                    ("type", "2"),
                ],
            );
            let (http, base) = (env.http.clone(), env.base.clone());
            tokio::spawn(async move { post_form(&http, &base, "/login", &p).await })
        };
        // The first half of the burst goes out at once...
        let mut first: Vec<_> = (0..BURST / 2)
            .map(|i| guess(format!("wrong-{trial}-{i}")))
            .collect();
        // ...and once it has used up the threshold (the lock now stands, most of the half still
        // in flight), the right password goes out amid the second half.
        tokio::time::timeout(Duration::from_secs(120), async {
            while app.metrics.login_failures().0 < verdicts_before + u64::from(THRESHOLD) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the first half's guesses reach the service");
        let mut second: Vec<_> = (0..BURST / 4)
            .map(|i| guess(format!("later-{trial}-{i}")))
            .collect();
        let right = guess("password1".into());
        second.extend((BURST / 4 + 1..BURST / 2).map(|i| guess(format!("later-{trial}-{i}"))));
        first.append(&mut second);
        let right: Value = right.await.unwrap();
        assert_eq!(
            right["result"], 102,
            "trial {trial}: the right password got in"
        );
        for r in futures::future::join_all(first).await {
            assert_eq!(r.unwrap()["result"], 102, "trial {trial}");
        }
        // Exactly the threshold's worth of passwords was looked at; the other guesses, the right
        // one among them, met the lock.
        assert_eq!(
            app.metrics.login_failures().0 - verdicts_before,
            u64::from(THRESHOLD),
            "trial {trial}: password verdicts in the burst"
        );
        // The lock still stands after the burst.
        assert_eq!(env.login(&name, "password1", 2).await["result"], 102);
    }
}
