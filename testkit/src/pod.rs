//! A pod spec's container as the kubelet and the container runtime would
//! run it: its environment, its command, its ports.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;

use k8s_openapi::api::core::v1::{Container, Secret};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A Secret's keys and values, as envFrom hands them to a container.
pub fn secret_env(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8(v.0.clone()).unwrap()))
        .collect()
}

/// The environment the kubelet would give `container`: `envFrom` Secrets
/// (looked up by name in `secrets`), then `env` entries with a value, a
/// Secret key, or a field reference (looked up in `fields`, e.g.
/// `metadata.name`). Anything else panics: the test must not silently run
/// a container with less than its pod spec says.
pub fn container_env(
    container: &Container,
    secrets: &HashMap<String, Secret>,
    fields: &HashMap<&str, String>,
) -> BTreeMap<String, String> {
    let secret = |name: &str| {
        secrets
            .get(name)
            .unwrap_or_else(|| panic!("container reads Secret {name}, which the test lacks"))
    };
    let mut env = BTreeMap::new();
    for from in container.env_from.iter().flatten() {
        let r = from
            .secret_ref
            .as_ref()
            .unwrap_or_else(|| panic!("only secretRef envFrom is supported: {from:?}"));
        let prefix = from.prefix.clone().unwrap_or_default();
        for (k, v) in secret_env(secret(&r.name)) {
            env.insert(format!("{prefix}{k}"), v);
        }
    }
    for e in container.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            v.clone()
        } else {
            let from = e.value_from.as_ref().unwrap();
            if let Some(f) = &from.field_ref {
                fields
                    .get(f.field_path.as_str())
                    .unwrap_or_else(|| panic!("no value for fieldRef {}", f.field_path))
                    .clone()
            } else if let Some(k) = &from.secret_key_ref {
                match secret_env(secret(&k.name)).remove(&k.key) {
                    Some(v) => v,
                    None if k.optional == Some(true) => continue,
                    None => panic!("Secret {} has no key {}", k.name, k.key),
                }
            } else {
                panic!("unsupported env source for {}: {from:?}", e.name)
            }
        };
        env.insert(e.name.clone(), value);
    }
    env
}

/// A command that runs `binary` the way the container runtime runs
/// `container` from an image whose entrypoint is that binary: the
/// container's args, exactly `env` (plus PATH), no command override.
pub fn container_command(
    binary: &Path,
    container: &Container,
    env: &BTreeMap<String, String>,
) -> Command {
    assert!(
        container.command.is_none(),
        "the image's entrypoint is the binary; the container must not override it"
    );
    let mut cmd = Command::new(binary);
    cmd.args(container.args.iter().flatten())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env);
    cmd
}

/// The container port named `name`.
pub fn container_port(container: &Container, name: &str) -> u16 {
    container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("container has no port named {name}"))
        .container_port as u16
}

/// The port a probe (or any port reference) names: a number, or the name of
/// one of `container`'s ports.
pub fn probe_port(container: &Container, port: &IntOrString) -> u16 {
    match port {
        IntOrString::String(name) => container_port(container, name),
        IntOrString::Int(p) => *p as u16,
    }
}
