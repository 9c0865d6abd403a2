//! Storage misbehaving while workers load their module: MinIO going away
//! mid-download and coming back, an object replaced mid-download, a corrupt
//! zstd object. Outages are played by a proxy in front of the test
//! environment's MinIO (other tests share it), never by stopping it. A
//! worker ends up serving a whole module whose digest is the one it reports,
//! or refuses with an error that names the object; never a mix.

mod support;

use std::collections::HashMap;

use std::process::Command;
use std::time::{Duration, Instant};

use nur_testkit::examples;
use nur_testkit::net::free_port;
use nur_testkit::net::get;
use nur_testkit::store::Proxy;
use nur_testkit::store::{self as storage, aws};
use nur_testkit::{TestEnv, testenv};
use support::{BIN, Worker};

const ECHO: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi";

fn upload(env: &TestEnv, name: &str, bytes: Vec<u8>) -> String {
    storage::upload(env, "storage-chaos", name, bytes)
}

/// The AWS_* variables, with the endpoint moved to `proxy`.
fn through(env: &TestEnv, proxy: &Proxy) -> HashMap<String, String> {
    let mut vars = aws(env);
    vars.insert("AWS_ENDPOINT_URL".into(), proxy.url());
    vars
}

/// `nur-worker check URL` through `vars`: (exit code, stdout + stderr).
fn check(vars: &HashMap<String, String>, url: &str) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["check", url])
        .envs(vars)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// Starts `nur-worker serve` on a known admin port, in the background (it
/// may not become ready until the test lets it); joins to the worker.
fn serve_later(
    vars: HashMap<String, String>,
    url: &str,
    args: &[&str],
) -> (
    std::net::SocketAddr,
    std::thread::JoinHandle<Result<Worker, support::Failed>>,
) {
    let admin = format!("127.0.0.1:{}", free_port());
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--module", url, "--log-format", "json"])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", &admin])
        .args(args)
        .envs(vars);
    let worker = std::thread::spawn(move || Worker::spawn(command));
    (admin.parse().unwrap(), worker)
}

/// Waits up to `timeout` for `condition`.
fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn readyz(admin: std::net::SocketAddr) -> Option<u16> {
    std::net::TcpStream::connect(admin).ok()?;
    Some(get(admin, "/readyz").unwrap().0)
}

#[test]
fn storage_lost_mid_download_and_back_the_worker_serves_the_whole_module() {
    let env = testenv!();
    let echo = examples::read("echo.wasm");
    let digest = nur_module::sha256_hex(&echo);
    let url = upload(&env, "cut.wasm", echo.clone());
    let proxy = Proxy::start(&storage::minio(&env));
    // MinIO "stops" 6,000 bytes into the module's body: every connection
    // is cut and new ones are reset until it "restarts".
    let down = proxy.clone();
    proxy.cut_response_after(6000, move || down.set_down(true));

    let (admin, worker) = serve_later(through(&env, &proxy), &url, &["--sha256", &digest]);
    wait_until(Duration::from_secs(20), "the cut", || proxy.cut_done());
    // The worker keeps retrying, not ready, nothing served from what it got.
    let refused = proxy.accepted();
    wait_until(Duration::from_secs(20), "two more tries", || {
        proxy.accepted() >= refused + 2
    });
    assert_eq!(readyz(admin), Some(503), "not ready while storage is down");
    assert!(!worker.is_finished(), "the worker keeps retrying");

    proxy.set_down(false);
    let worker = worker.join().unwrap().expect("serves once storage is back");
    // The pin matched: the module served is the whole object.
    assert_eq!(worker.request(b"hi"), ECHO);
    let line = worker
        .wait_log(&["storage unreachable", &url], Duration::from_secs(1))
        .expect("the outage is logged with the URL");
    assert!(line.contains("retry_in_ms"), "{line}");
    assert_eq!(get(admin, "/readyz").unwrap().0, 200);
}

#[test]
fn an_object_replaced_mid_download_is_never_half_loaded() {
    let env = testenv!();
    let (old, new) = (
        examples::read("http-hello.wasm"),
        examples::read("echo.wasm"),
    );
    let (old_digest, new_digest) = (nur_module::sha256_hex(&old), nur_module::sha256_hex(&new));
    let url = upload(&env, "replaced.wasm", old.clone());
    let key = storage::key(&env, &url);
    let proxy = Proxy::start(&storage::minio(&env));
    let vars = through(&env, &proxy);
    let replace = |proxy: &Proxy| {
        let (env, key, new) = (env.clone(), key.clone(), new.clone());
        proxy.cut_response_after(8000, move || {
            storage::put_blocking(&env, &key, new);
        });
    };

    // One fetch (`check`): the body breaks off, the store's resumed read
    // finds another object (ETag) and gives up. An error naming the object,
    // or one whole module with its own digest; never a summary of a mix.
    replace(&proxy);
    let (code, out) = check(&vars, &url);
    assert!(proxy.cut_done());
    if code == 0 {
        assert!(
            out.contains(&old_digest) || out.contains(&new_digest),
            "a digest of neither object: {out}"
        );
    } else {
        assert_eq!(code, 1, "{out}");
        let error = format!("error: {url}: storage unreachable");
        assert!(out.lines().any(|l| l.starts_with(&error)), "{out}");
    }
    eprintln!("check of an object replaced mid-download: exit {code}: {out}");

    // A worker retries, and serves the new object whole: its pin matches.
    storage::put_blocking(&env, &key, old);
    replace(&proxy);
    let worker = Worker::spawn({
        let mut command = Worker::command(url.as_ref(), &["--sha256", &new_digest]);
        command.envs(&vars);
        command
    })
    .expect("serves the new object");
    assert!(proxy.cut_done());
    assert_eq!(worker.request(b"hi"), ECHO, "the new module answers");

    // Pinned to the old object, the same race is refused with both digests.
    storage::put_blocking(&env, &key, examples::read("http-hello.wasm"));
    replace(&proxy);
    let mut command = Worker::command(url.as_ref(), &["--sha256", &old_digest]);
    command.envs(&vars);
    let failed = Worker::spawn(command).err().expect("refused");
    failed.assert_refused(&format!(
        "{url}: sha256 is {new_digest}, but the pin is {old_digest}"
    ));
}

#[test]
fn a_corrupt_zstd_object_is_refused_with_its_name() {
    let env = testenv!();
    let mut corrupt = zstd::encode_all(&examples::read("echo.wasm")[..], 3).unwrap();
    corrupt.truncate(corrupt.len() / 2);
    let url = upload(&env, "corrupt.wasm.zst", corrupt);
    let vars = aws(&env);

    let (code, out) = check(&vars, &url);
    assert_eq!(code, 1, "{out}");
    let error = format!("error: {url}: corrupt zstd data");
    assert!(out.lines().any(|l| l.starts_with(&error)), "{out}");

    let mut command = Worker::command(url.as_ref(), &[]);
    command.envs(&vars);
    let started = Instant::now();
    let failed = Worker::spawn(command).err().expect("refused");
    failed.assert_refused(&format!("{url}: corrupt zstd data"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused at once, not retried"
    );
}
