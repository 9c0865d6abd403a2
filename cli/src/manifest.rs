//! The NurFunction `nur deploy` applies for a function of the nurfile: its
//! module pinned by sha256, and the spec fields the nurfile gives, as
//! written (the API server's schema judges them). Pure: no client.

use serde_json::{Value, json};

use crate::nurfile::Function;

/// The field manager of everything `nur deploy` applies.
pub const FIELD_MANAGER: &str = "nur-cli";

/// Annotation holding the function's name as written in the nurfile.
pub const NAME_ANNOTATION: &str = "nur.dev/function-name";

/// The NurFunction of `function`, serving the module at `url` pinned to
/// `sha256`.
pub fn nurfunction(function: &Function, url: &str, sha256: &str) -> Value {
    let mut module = json!({ "url": url, "sha256": sha256 });
    let mut spec = serde_json::Map::new();
    for (key, value) in &function.spec {
        let key = key.as_str().expect("nurfile keys are strings");
        let value = serde_json::to_value(value).expect("YAML values are JSON values");
        if key == "credentialsSecret" {
            module["credentialsSecret"] = value;
        } else {
            spec.insert(key.to_string(), value);
        }
    }
    spec.insert("module".into(), module);
    json!({
        "apiVersion": "nur.dev/v1alpha1",
        "kind": "NurFunction",
        "metadata": {
            "name": function.label,
            "labels": { "app.kubernetes.io/managed-by": FIELD_MANAGER },
            "annotations": { NAME_ANNOTATION: function.name },
        },
        "spec": spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nurfile::Nurfile;
    use std::path::Path;

    #[test]
    fn the_nurfunction_pins_the_module_and_carries_the_nurfile_fields() {
        let n = Nurfile::parse(
            Path::new("nurfile.yaml"),
            Path::new("/repo"),
            "functions:
  - name: 🐄 cowsay
    directory: /cowsay
    template: rust
    replicas: 2
    credentialsSecret: object-store
    limits: {memory: 64Mi, timeout: 5s}
",
        )
        .unwrap();
        let got = nurfunction(&n.functions[0], "s3://b/p/sha256/ab.wasm.zst", "ab");
        let want = json!({
            "apiVersion": "nur.dev/v1alpha1",
            "kind": "NurFunction",
            "metadata": {
                "name": "cowsay",
                "labels": {"app.kubernetes.io/managed-by": "nur-cli"},
                "annotations": {"nur.dev/function-name": "🐄 cowsay"},
            },
            "spec": {
                "module": {
                    "url": "s3://b/p/sha256/ab.wasm.zst",
                    "sha256": "ab",
                    "credentialsSecret": "object-store",
                },
                "replicas": 2,
                "limits": {"memory": "64Mi", "timeout": "5s"},
            },
        });
        assert_eq!(got, want);
    }
}
