//! Module sources against the test environment's MinIO (real S3), digest
//! pins, the artifact cache and ahead-of-time artifacts.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nur_testkit::examples;
use nur_testkit::net::free_port;
use nur_testkit::net::get;
use nur_testkit::store::Proxy;
use nur_testkit::store::aws;
use nur_testkit::{TestEnv, testenv};
use support::{BIN, Worker};

const ECHO: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi";

/// Uploads `bytes` under a key unique to this test; returns the s3:// URL.
fn upload(env: &TestEnv, name: &str, bytes: Vec<u8>) -> String {
    nur_testkit::store::upload(env, "sources", name, bytes)
}

fn serve(
    env: &HashMap<String, String>,
    url: &str,
    args: &[&str],
) -> Result<Worker, support::Failed> {
    let mut command = Worker::command(url.as_ref(), args);
    command.envs(env);
    Worker::spawn(command)
}

fn echo_bytes() -> Vec<u8> {
    examples::read("echo.wasm")
}

#[test]
fn serves_a_module_from_s3_plain_and_zstd() {
    let env = testenv!();
    let vars = aws(&env);
    let url = upload(&env, "echo.wasm", echo_bytes());
    let worker = serve(&vars, &url, &[]).unwrap();
    assert_eq!(worker.request(b"hi"), ECHO);

    let compressed = zstd::encode_all(&echo_bytes()[..], 19).unwrap();
    let digest = nur_module::sha256_hex(&compressed);
    let url = upload(&env, "echo.wasm.zst", compressed);
    let worker = serve(&vars, &url, &["--sha256", &digest]).unwrap();
    assert_eq!(worker.request(b"hi"), ECHO);

    let out = Command::new(BIN)
        .args(["check", &url])
        .envs(&vars)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&digest));
}

#[test]
fn a_digest_mismatch_is_refused_with_both_digests() {
    let env = testenv!();
    let url = upload(&env, "pinned.wasm", echo_bytes());
    let actual = nur_module::sha256_hex(&echo_bytes());
    let pin = "ab".repeat(32);
    let failed = serve(&aws(&env), &url, &["--sha256", &pin])
        .err()
        .expect("refused");
    failed.assert_refused(&format!("{url}: sha256 is {actual}, but the pin is {pin}"));
}

#[test]
fn a_missing_object_and_wrong_credentials_are_named() {
    let env = testenv!();
    let mut vars = aws(&env);
    let missing = format!("s3://{}/sources/no-such-object.wasm", env.bucket());
    let failed = serve(&vars, &missing, &[]).err().expect("refused");
    failed.assert_refused(&format!("{missing}: not found"));

    let url = upload(&env, "secret.wasm", echo_bytes());
    vars.insert("AWS_SECRET_ACCESS_KEY".into(), "not-the-secret".into());
    let failed = serve(&vars, &url, &[]).err().expect("refused");
    failed.assert_refused(&format!("{url}: access denied"));
}

#[test]
fn storage_down_at_start_then_up_the_worker_becomes_ready() {
    let env = testenv!();
    let url = upload(&env, "late.wasm", echo_bytes());
    let storage = Proxy::start(&nur_testkit::store::minio(&env));
    storage.set_down(true);
    let (listen, admin) = (free_port(), free_port());
    let mut vars = aws(&env);
    vars.insert("AWS_ENDPOINT_URL".into(), storage.url());
    let mut child = Command::new(BIN)
        .args(["serve", "--module", &url])
        .args(["--listen", &format!("127.0.0.1:{listen}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .envs(&vars)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(admin).is_err() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        get(admin, "/readyz").unwrap().0,
        503,
        "not ready while storage is down"
    );
    assert_eq!(get(admin, "/healthz").unwrap().0, 200);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the worker keeps retrying"
    );

    storage.set_down(false);
    let until = Instant::now() + Duration::from_secs(40);
    while get(admin, "/readyz").unwrap().0 != 200 {
        assert!(Instant::now() < until, "the worker did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut stream = TcpStream::connect(("127.0.0.1", listen)).unwrap();
    stream.write_all(b"hi").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(support::read_to_close(&mut stream), ECHO);
    child.kill().unwrap();
    child.wait().unwrap();
}

fn native_code(worker: &Worker) -> String {
    let line = worker.serving_line();
    let start = line.find("\"native_code\":\"").unwrap() + 15;
    line[start..start + line[start..].find('"').unwrap()].to_string()
}

#[test]
fn the_cache_is_used_and_a_corrupt_entry_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--cache-dir", dir.path().to_str().unwrap()];
    let echo = examples::path("echo.wasm");
    let first = Worker::start(&echo, &args);
    assert_eq!(native_code(&first), "compiled");
    drop(first);
    let second = Worker::start(&echo, &args);
    assert_eq!(native_code(&second), "cache");
    assert_eq!(second.request(b"hi"), ECHO);
    drop(second);

    let artifact = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "artifact"))
        .unwrap();
    for damage in [corrupt as fn(&Path), truncate] {
        damage(&artifact);
        let worker = Worker::start(&echo, &args);
        assert_eq!(native_code(&worker), "compiled");
        assert!(
            worker
                .wait_log(&["cached artifact refused"], Duration::from_secs(1))
                .is_some()
        );
        assert_eq!(worker.request(b"hi"), ECHO);
    }
    assert_eq!(native_code(&Worker::start(&echo, &args)), "cache");
}

fn corrupt(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() / 3]).unwrap();
}

#[test]
fn an_ahead_of_time_artifact_is_served_only_when_its_digest_is_pinned() {
    let env = testenv!();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("echo.artifact");
    let out = Command::new(BIN)
        .args([
            "compile",
            examples::path("echo.wasm").to_str().unwrap(),
            "-o",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let bytes = std::fs::read(&file).unwrap();
    let digest = nur_module::sha256_hex(&bytes);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&digest));

    let artifact = upload(&env, "echo.artifact", bytes);
    let vars = aws(&env);
    let module = examples::path("echo.wasm");
    let module = module.to_str().unwrap();
    let worker = serve(
        &vars,
        module,
        &["--artifact", &artifact, "--artifact-sha256", &digest],
    )
    .unwrap();
    assert_eq!(native_code(&worker), "artifact");
    assert_eq!(worker.request(b"hi"), ECHO);

    // An artifact that cannot be used costs a compile, never the function:
    // a wrong pin, an artifact of another module, one that is not there.
    let wrong = "cd".repeat(32);
    let compiled = serve(
        &vars,
        module,
        &["--artifact", &artifact, "--artifact-sha256", &wrong],
    )
    .unwrap();
    assert_eq!(native_code(&compiled), "compiled");
    assert!(
        compiled
            .wait_log(
                &[&format!(
                    "{artifact}: sha256 is {digest}, but the pin is {wrong}"
                )],
                Duration::from_secs(1),
            )
            .is_some(),
        "{:?}",
        compiled.logs()
    );
    assert_eq!(compiled.request(b"hi"), ECHO);

    let other = examples::path("c-hello.wasm");
    let compiled = serve(
        &vars,
        other.to_str().unwrap(),
        &["--artifact", &artifact, "--artifact-sha256", &digest],
    )
    .unwrap();
    assert_eq!(native_code(&compiled), "compiled");
    assert!(
        compiled
            .wait_log(
                &[
                    "--artifact not used",
                    "the artifact was built for module sha256",
                ],
                Duration::from_secs(1),
            )
            .is_some(),
        "{:?}",
        compiled.logs()
    );

    let missing = format!("{artifact}.missing");
    let compiled = serve(
        &vars,
        module,
        &["--artifact", &missing, "--artifact-sha256", &digest],
    )
    .unwrap();
    assert_eq!(native_code(&compiled), "compiled");
    assert!(
        compiled
            .wait_log(&["--artifact not used"], Duration::from_secs(1))
            .is_some(),
        "{:?}",
        compiled.logs()
    );

    let unpinned = Command::new(BIN)
        .args(["serve", "--module", module, "--artifact", &artifact])
        .output()
        .unwrap();
    assert_eq!(
        unpinned.status.code(),
        Some(2),
        "--artifact needs --artifact-sha256"
    );
}

#[test]
fn compile_stores_an_artifact_beside_the_module_and_reports_its_sha256() {
    let env = testenv!();
    let module = upload(&env, "stored/echo.wasm", echo_bytes());
    let module_digest = nur_module::sha256_hex(&echo_bytes());
    let artifact = format!("{module}.{}.artifact", &module_digest[..16]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("termination-log");
    let vars = aws(&env);
    let out = Command::new(BIN)
        .args([
            "compile",
            &module,
            "--upload",
            &artifact,
            "--sha256",
            &module_digest,
        ])
        .args([
            "--static-credentials",
            "--termination-log",
            log.to_str().unwrap(),
        ])
        .envs(&vars)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let message = std::fs::read_to_string(&log).unwrap();
    let sha = message
        .strip_prefix("artifact-sha256 ")
        .map(str::trim)
        .unwrap_or_else(|| panic!("{message}"));
    assert_eq!(sha.len(), 64, "{message}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(sha));

    // Pinned by that sha256, a worker loads it instead of compiling.
    let worker = serve(
        &vars,
        &module,
        &[
            "--sha256",
            &module_digest,
            "--artifact",
            &artifact,
            "--artifact-sha256",
            sha,
        ],
    )
    .unwrap();
    assert_eq!(native_code(&worker), "artifact");
    assert_eq!(worker.request(b"hi"), ECHO);

    // Other bytes than the pin: nothing compiled or stored, and the
    // termination message says why.
    let wrong = "ab".repeat(32);
    let out = Command::new(BIN)
        .args([
            "compile",
            &module,
            "--upload",
            &format!("{artifact}.2"),
            "--sha256",
            &wrong,
        ])
        .args(["--termination-log", log.to_str().unwrap()])
        .envs(&vars)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let message = std::fs::read_to_string(&log).unwrap();
    assert!(
        message.contains(&format!(
            "sha256 is {module_digest}, but the pin is {wrong}"
        )),
        "{message}"
    );
}
