//! `nurfile.yaml`: the original platform's format (`functions` with `name`,
//! `directory`, `template`, `build.command`, `build.output`), read
//! unchanged, plus Nur's optional keys (`store`, `namespace`, and per
//! function the NurFunction spec fields a user sets). An unknown key is an
//! error naming it and its line.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::names::{self, NameError};
use crate::template::Template;

#[derive(Debug, thiserror::Error)]
pub enum NurfileError {
    #[error("{path}: cannot read it: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: function {index} ({name:?}): {source}")]
    Name {
        path: PathBuf,
        index: usize,
        name: String,
        source: NameError,
    },
    #[error(
        "{path}: functions {first:?} and {second:?} both become {label:?} as Kubernetes names: rename one"
    )]
    SameName {
        path: PathBuf,
        first: String,
        second: String,
        label: String,
    },
    #[error("{path}: function {name:?}: {message}")]
    Function {
        path: PathBuf,
        name: String,
        message: String,
    },
    #[error("{path}: no function named {wanted:?}; the nurfile has: {have}")]
    NotInNurfile {
        path: PathBuf,
        wanted: String,
        have: String,
    },
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    functions: Vec<Entry>,
    /// Where modules are uploaded (`s3://bucket/prefix`).
    store: Option<String>,
    /// The namespace functions are deployed to.
    namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Entry {
    name: String,
    directory: String,
    template: Template,
    build: Option<Build>,
    // NurFunction spec fields, passed to the NurFunction as written.
    routes: Option<serde_yaml::Value>,
    scale_to_zero: Option<serde_yaml::Value>,
    replicas: Option<i32>,
    autoscaling: Option<serde_yaml::Value>,
    limits: Option<serde_yaml::Value>,
    env: Option<serde_yaml::Value>,
    credentials_secret: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Build {
    command: String,
    output: String,
}

/// A nurfile, read and checked.
#[derive(Debug)]
pub struct Nurfile {
    /// The nurfile's path.
    pub path: PathBuf,
    /// The repository root: the nurfile's directory.
    pub root: PathBuf,
    pub store: Option<String>,
    pub namespace: Option<String>,
    pub functions: Vec<Function>,
}

/// One function of the nurfile.
#[derive(Debug, Clone)]
pub struct Function {
    /// The name as written (`🐄 cowsay`).
    pub name: String,
    /// Its Kubernetes name (`cowsay`): the NurFunction's and the module's.
    pub label: String,
    /// Its directory, absolute.
    pub directory: PathBuf,
    pub template: Template,
    /// The build command, run by `sh -c` in `directory`.
    pub command: String,
    /// The module the command writes, absolute.
    pub output: PathBuf,
    /// NurFunction spec fields given in the nurfile.
    pub spec: serde_yaml::Mapping,
}

impl Nurfile {
    pub fn load(path: &Path) -> Result<Nurfile, NurfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| NurfileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let root = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Nurfile::parse(path, &root, &text)
    }

    pub fn parse(path: &Path, root: &Path, text: &str) -> Result<Nurfile, NurfileError> {
        let file: File = serde_yaml::from_str(text).map_err(|e| NurfileError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut functions: Vec<Function> = Vec::new();
        for (index, e) in file.functions.into_iter().enumerate() {
            let label = names::dns_label(&e.name).map_err(|source| NurfileError::Name {
                path: path.to_path_buf(),
                index,
                name: e.name.clone(),
                source,
            })?;
            if let Some(other) = functions.iter().find(|f| f.label == label) {
                return Err(NurfileError::SameName {
                    path: path.to_path_buf(),
                    first: other.name.clone(),
                    second: e.name,
                    label,
                });
            }
            let directory = under_root(root, &e.directory);
            let (command, output) = match e.build {
                Some(b) => (b.command, b.output),
                None => {
                    let d = e.template.default_build(&label);
                    (d.command, d.output)
                }
            };
            if command.trim().is_empty() {
                return Err(NurfileError::Function {
                    path: path.to_path_buf(),
                    name: e.name,
                    message: "build.command is empty".into(),
                });
            }
            let output = under_root(&directory, &output);
            let mut spec = serde_yaml::Mapping::new();
            let mut put = |k: &str, v: Option<serde_yaml::Value>| {
                if let Some(v) = v {
                    spec.insert(k.into(), v);
                }
            };
            put("routes", e.routes);
            put("scaleToZero", e.scale_to_zero);
            put("replicas", e.replicas.map(Into::into));
            put("autoscaling", e.autoscaling);
            put("limits", e.limits);
            put("env", e.env);
            put("credentialsSecret", e.credentials_secret.map(Into::into));
            functions.push(Function {
                name: e.name,
                label,
                directory,
                template: e.template,
                command,
                output,
                spec,
            });
        }
        Ok(Nurfile {
            path: path.to_path_buf(),
            root: root.to_path_buf(),
            store: file.store,
            namespace: file.namespace,
            functions,
        })
    }

    /// The functions named (by name as written or Kubernetes name); all of
    /// them when `wanted` is empty.
    pub fn select(&self, wanted: &[String]) -> Result<Vec<Function>, NurfileError> {
        if wanted.is_empty() {
            return Ok(self.functions.clone());
        }
        wanted
            .iter()
            .map(|w| {
                self.functions
                    .iter()
                    .find(|f| &f.name == w || &f.label == w)
                    .cloned()
                    .ok_or_else(|| NurfileError::NotInNurfile {
                        path: self.path.clone(),
                        wanted: w.clone(),
                        have: self
                            .functions
                            .iter()
                            .map(|f| f.label.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
            })
            .collect()
    }
}

/// `p` below `base`, as the original platform read paths: a leading `/`
/// means `base` itself, not the file system's root.
fn under_root(base: &Path, p: &str) -> PathBuf {
    base.join(p.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str = "functions:
  - name: hello-world
    directory: /examples/hello_world
    template: rust
    build:
      command: cargo build --target wasm32-unknown-unknown --release
      output: /target/wasm32-unknown-unknown/release/hello_world.wasm
  - name: 🐄 cowsay
    directory: /examples/cowsay
    template: rust
";

    fn parse(text: &str) -> Result<Nurfile, NurfileError> {
        Nurfile::parse(Path::new("nurfile.yaml"), Path::new("/repo"), text)
    }

    #[test]
    fn the_original_format_reads_unchanged() {
        let n = parse(ORIGINAL).unwrap();
        assert_eq!(n.functions.len(), 2);
        let hello = &n.functions[0];
        assert_eq!(hello.label, "hello-world");
        assert_eq!(hello.directory, Path::new("/repo/examples/hello_world"));
        assert_eq!(
            hello.output,
            Path::new(
                "/repo/examples/hello_world/target/wasm32-unknown-unknown/release/hello_world.wasm"
            )
        );
        let cow = &n.functions[1];
        assert_eq!(cow.name, "🐄 cowsay");
        assert_eq!(cow.label, "cowsay");
        // The template's default: cargo for wasm32, the crate's file name.
        assert!(
            cow.command.contains("--target wasm32-unknown-unknown"),
            "{}",
            cow.command
        );
        assert_eq!(
            cow.output,
            Path::new("/repo/examples/cowsay/target/wasm32-unknown-unknown/release/cowsay.wasm")
        );
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let text = ORIGINAL.replace(
            "    template: rust\n    build:",
            "    template: rust\n    replica: 2\n    build:",
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("unknown field `replica`"), "{e}");
        assert!(e.contains("line 5"), "{e}");
    }

    #[test]
    fn two_names_for_one_kubernetes_name_are_refused() {
        let text = format!("{ORIGINAL}  - name: Cowsay!\n    directory: /x\n    template: rust\n");
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.contains("\"🐄 cowsay\" and \"Cowsay!\" both become \"cowsay\""),
            "{e}"
        );
    }

    #[test]
    fn nur_keys_extend_it() {
        let text = "store: s3://functions/p\nnamespace: team\nfunctions:
  - name: a
    directory: /a
    template: wat
    replicas: 2
    routes: {http: [{pathPrefix: /a}]}
    credentialsSecret: object-store
";
        let n = parse(text).unwrap();
        assert_eq!(n.store.as_deref(), Some("s3://functions/p"));
        assert_eq!(n.namespace.as_deref(), Some("team"));
        let spec = &n.functions[0].spec;
        assert_eq!(spec["replicas"], 2);
        assert_eq!(spec["credentialsSecret"], "object-store");
        assert_eq!(spec["routes"]["http"][0]["pathPrefix"], "/a");
    }

    #[test]
    fn an_unknown_template_names_the_known_ones() {
        let e = parse("functions:\n  - {name: a, directory: /a, template: cobol}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown variant `cobol`"), "{e}");
        assert!(e.contains("rust"), "{e}");
    }

    #[test]
    fn select_by_either_name_or_say_what_there_is() {
        let n = parse(ORIGINAL).unwrap();
        assert_eq!(n.select(&["cowsay".into()]).unwrap()[0].name, "🐄 cowsay");
        assert_eq!(n.select(&["🐄 cowsay".into()]).unwrap()[0].label, "cowsay");
        let e = n.select(&["nope".into()]).unwrap_err().to_string();
        assert!(
            e.contains("no function named \"nope\"; the nurfile has: hello-world, cowsay"),
            "{e}"
        );
    }
}
