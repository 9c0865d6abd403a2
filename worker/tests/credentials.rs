//! `--static-credentials`: a worker whose environment comes from a tenant's
//! credentials Secret configures its store only from static settings,
//! against the test environment's MinIO and a listener standing in for a
//! credentials service.

mod support;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nur_testkit::examples;
use nur_testkit::store::{aws, upload};
use nur_testkit::testenv;
use support::Worker;

/// A listener that counts the connections made to it.
fn credentials_service() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/creds", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for socket in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (url, seen)
}

/// MinIO's settings without its keys, and a credentials URI with the
/// token file a tenant would like the worker to send.
fn hostile_environment(env: &nur_testkit::TestEnv, uri: &str) -> HashMap<String, String> {
    let token = std::env::temp_dir().join(format!("nur-token-{}", std::process::id()));
    std::fs::write(&token, "a-token-of-the-pod").unwrap();
    let mut vars = aws(env);
    vars.remove("AWS_ACCESS_KEY_ID");
    vars.remove("AWS_SECRET_ACCESS_KEY");
    vars.insert("AWS_CONTAINER_CREDENTIALS_FULL_URI".into(), uri.into());
    vars.insert(
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(),
        token.display().to_string(),
    );
    vars
}

#[test]
fn static_credentials_never_follow_a_credentials_uri() {
    let env = testenv!();
    let echo = std::fs::read(examples::path("echo.wasm")).unwrap();
    let url = upload(&env, "credentials", "echo.wasm", echo);
    let (uri, seen) = credentials_service();
    let vars = hostile_environment(&env, &uri);

    let mut command = Worker::command(url.as_ref(), &["--static-credentials"]);
    command.env_clear().envs(&vars);
    let failed = Worker::spawn(command).err().expect("no keys: refused");
    failed.assert_refused(&format!("{url}: access denied"));
    assert_eq!(seen.load(Ordering::SeqCst), 0, "the worker called the URI");

    // With the keys as well, the static ones are used and the URI still never.
    let mut vars = vars;
    vars.extend(aws(&env));
    let mut command = Worker::command(url.as_ref(), &["--static-credentials"]);
    command.env_clear().envs(&vars);
    let worker = Worker::spawn(command).unwrap();
    assert!(!worker.request(b"hi").is_empty());
    assert_eq!(seen.load(Ordering::SeqCst), 0);
}

#[test]
fn without_the_flag_the_environment_is_the_operators_choice() {
    // The worker's own environment (workload identity) is followed as each
    // store's from_env reads it: this is what --static-credentials turns off.
    let env = testenv!();
    let echo = std::fs::read(examples::path("echo.wasm")).unwrap();
    let url = upload(&env, "credentials", "echo2.wasm", echo);
    let (uri, seen) = credentials_service();
    let mut command = Worker::command(url.as_ref(), &[]);
    command.env_clear().envs(hostile_environment(&env, &uri));
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while seen.load(Ordering::SeqCst) == 0 && started.elapsed().as_secs() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.load(Ordering::SeqCst) > 0, "the URI was never asked");
}
