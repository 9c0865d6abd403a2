//! The fetch policy over real sockets: which credential keys a tenant's
//! Secret may hold, unsigned requests without a credential, local
//! addresses and files refused, error bodies not quoted, the size limit.

use std::collections::BTreeMap;
use std::io::Read;

use nur_module::{Policy, Settings, Source, SourceError};

const MAX_MODULE_BYTES: u64 = nur_module::policy::MAX_MODULE_BYTES;

/// A tenant's policy that may still reach this machine's test servers.
const LOCAL_TENANT: Policy = Policy {
    allow_files: false,
    allow_local_addresses: true,
    timeout: std::time::Duration::from_secs(5),
    retries: 0,
    max_bytes: MAX_MODULE_BYTES,
    quote_error_bodies: false,
};

const TENANT: Policy = Policy {
    allow_local_addresses: false,
    ..LOCAL_TENANT
};

/// A server on a free port that answers every connection with `answer`
/// and reports how many connections it saw.
fn server(answer: &'static [u8]) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let mut head = [0; 4096];
            let _ = socket.read(&mut head);
            let _ = socket.write_all(answer);
        }
    });
    (format!("http://{addr}"), seen)
}

/// The head of the first request a store opened with `vars` sends for
/// s3://fns/echo.wasm (nobody answers it).
async fn first_request(vars: BTreeMap<String, String>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut vars = vars;
    vars.insert(
        "AWS_ENDPOINT_URL".into(),
        format!("http://{}", listener.local_addr().unwrap()),
    );
    vars.insert("AWS_ALLOW_HTTP".into(), "true".into());
    vars.insert("AWS_REGION".into(), "us-east-1".into());
    let source = Source::parse_with(
        "s3://fns/echo.wasm",
        Settings::Variables(&vars),
        &LOCAL_TENANT,
    )
    .unwrap();
    let request = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut head = [0; 4096];
        let n = socket.read(&mut head).unwrap();
        String::from_utf8_lossy(&head[..n]).into_owned()
    });
    let fetch = tokio::spawn(async move { source.fetch().await });
    let request = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::task::spawn_blocking(move || request.join().unwrap()),
    )
    .await
    .expect("the store sent its request")
    .unwrap();
    fetch.abort();
    assert!(request.starts_with("GET /fns/echo.wasm "), "{request}");
    request
}

#[tokio::test]
async fn variables_replace_the_environment() {
    let vars = BTreeMap::from([
        (
            "AWS_ACCESS_KEY_ID".to_string(),
            "from-the-secret".to_string(),
        ),
        ("AWS_SECRET_ACCESS_KEY".to_string(), "x".to_string()),
    ]);
    let request = first_request(vars).await;
    assert!(request.contains("Credential=from-the-secret/"), "{request}");
}

#[tokio::test]
async fn without_a_credential_requests_go_unsigned() {
    let request = first_request(BTreeMap::new()).await;
    assert!(
        !request.to_ascii_lowercase().contains("authorization:"),
        "{request}"
    );
}

#[tokio::test]
async fn a_secret_with_a_token_file_key_is_refused_before_any_request() {
    let (endpoint, seen) = server(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    let vars = BTreeMap::from([
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI".to_string(),
            format!("{endpoint}/creds"),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".to_string(),
            "/var/run/secrets/kubernetes.io/serviceaccount/token".to_string(),
        ),
        ("AWS_ENDPOINT_URL".to_string(), endpoint),
        ("AWS_ALLOW_HTTP".to_string(), "true".to_string()),
    ]);
    let err = Source::parse_with(
        "s3://fns/echo.wasm",
        Settings::Variables(&vars),
        &LOCAL_TENANT,
    )
    .unwrap_err();
    assert!(matches!(err, SourceError::Refused { .. }), "{err}");
    assert!(
        err.to_string().contains(
            "key AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE is not allowed in a credentials Secret"
        ),
        "{err}"
    );
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn local_addresses_are_refused_for_tenants() {
    let (endpoint, seen) = server(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    let err = Source::parse_with(
        &format!("{endpoint}/m.wasm"),
        Settings::Environment,
        &TENANT,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("127.0.0.1 is a loopback address"),
        "{err}"
    );
    let vars = BTreeMap::from([(
        "AWS_ENDPOINT_URL".to_string(),
        "http://169.254.169.254/".to_string(),
    )]);
    let err = Source::parse_with("s3://b/m.wasm", Settings::Variables(&vars), &TENANT).unwrap_err();
    assert!(
        err.to_string()
            .contains("AWS_ENDPOINT_URL: 169.254.169.254 is a link-local address"),
        "{err}"
    );
    // A name is checked when it is resolved.
    let port = endpoint.rsplit(':').next().unwrap();
    let url = format!("http://localhost:{port}/m.wasm");
    let err = Source::parse_with(&url, Settings::Environment, &TENANT)
        .unwrap()
        .fetch()
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Refused { .. }), "{err}");
    assert!(!err.is_transient());
    assert!(
        err.to_string()
            .contains("localhost resolves to a loopback address"),
        "{err}"
    );
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn files_are_refused_for_tenants_and_devices_for_everyone() {
    let err = Source::parse_with("/etc/passwd", Settings::Environment, &TENANT).unwrap_err();
    assert!(
        err.to_string().contains("local files are not allowed"),
        "{err}"
    );
    let err = Source::parse_with("file:///etc/passwd", Settings::Environment, &TENANT).unwrap_err();
    assert!(matches!(err, SourceError::Refused { .. }), "{err}");
    let err = Source::parse("/dev/zero")
        .unwrap()
        .fetch()
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "/dev/zero: not a regular file");
}

#[tokio::test]
async fn error_bodies_are_not_quoted_for_tenants() {
    // An error answer with a body of secrets, and no end to it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { return };
            std::thread::spawn(move || {
                let _ = socket.read(&mut [0; 4096]);
                let head = b"HTTP/1.1 403 Forbidden\r\ncontent-length: 100000000000\r\n\r\n";
                let _ = socket.write_all(head);
                let _ = socket.write_all(b"root:x:0:0:secret");
                while socket.write_all(&[b'x'; 65536]).is_ok() {}
            });
        }
    });
    let url = format!("{endpoint}/m.wasm");
    let started = std::time::Instant::now();
    let err = Source::parse_with(&url, Settings::Environment, &LOCAL_TENANT)
        .unwrap()
        .fetch()
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("secret"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{err}"
    );
    let err = Source::parse(&url).unwrap().fetch().await.unwrap_err();
    assert!(err.to_string().contains("root:x:0:0:secret"), "{err}");
}

#[tokio::test]
async fn a_download_stops_at_the_size_limit() {
    let (endpoint, _) = server(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789");
    let small = Policy {
        max_bytes: 10,
        ..LOCAL_TENANT
    };
    let err = Source::parse_with(&format!("{endpoint}/m.wasm"), Settings::Environment, &small)
        .unwrap()
        .fetch()
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{endpoint}/m.wasm: 100 bytes is more than the 10-byte module size limit")
    );
}
