//! A test's namespace, deleted when dropped.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::DeleteParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::{err, install_crypto_provider};

/// A namespace that is deleted (in the background) when dropped. Set
/// `NUR_TESTENV_KEEP_NAMESPACES=1` to keep it for debugging.
pub struct TestNamespace {
    pub(crate) name: String,
    pub(crate) client: Client,
    pub(crate) kubeconfig: PathBuf,
    pub(crate) keep: bool,
}

impl TestNamespace {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An admin client (default namespace: this one is not set; use
    /// `Api::namespaced(ns.client(), ns.name())`).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// `Api<K>` in this namespace with the admin client.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("nur-testkit: keeping namespace {}", self.name);
            return;
        }
        // Drop cannot await, and the test's runtime may be shutting down:
        // delete from a separate thread with its own runtime and client.
        let name = self.name.clone();
        let kubeconfig = self.kubeconfig.clone();
        let res = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(err)?;
            rt.block_on(async move {
                install_crypto_provider();
                let kc = Kubeconfig::read_from(kubeconfig).map_err(err)?;
                let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                    .await
                    .map_err(err)?;
                let client = Client::try_from(cfg).map_err(err)?;
                match Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::background())
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                    Err(e) => Err(err(e)),
                }
            })
        })
        .join();
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("nur-testkit: deleting namespace {}: {e}", self.name),
            Err(_) => eprintln!("nur-testkit: deleting namespace {} panicked", self.name),
        }
    }
}

pub(crate) fn sanitize(s: &str) -> String {
    let s: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let s = s.trim_matches('-');
    s.chars()
        .take(30)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
}

pub(crate) fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("{:08x}", h.finish() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_are_valid() {
        assert_eq!(sanitize("Deploy_GC::x"), "deploy-gc--x");
        assert!(sanitize(&"a".repeat(100)).len() <= 30);
    }
}
