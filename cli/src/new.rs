//! `nur new <template> <name>`: a function skeleton that builds and
//! answers, in `<name>/` beside the nurfile, and its entry in the nurfile
//! (created when there is none).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::names;
use crate::nurfile::Nurfile;
use crate::template::Template;

/// Writes the skeleton and the nurfile entry; returns the new directory.
pub fn new_function(nurfile: &Path, template: Template, name: &str) -> anyhow::Result<PathBuf> {
    let label = names::dns_label(name).with_context(|| format!("function name {name:?}"))?;
    let root = nurfile
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let before = if nurfile.exists() {
        let text = std::fs::read_to_string(nurfile)
            .with_context(|| format!("read {}", nurfile.display()))?;
        let current = Nurfile::parse(nurfile, root, &text)?;
        if let Some(f) = current.functions.iter().find(|f| f.label == label) {
            bail!(
                "{}: already has a function {:?} ({label}): pick another name",
                nurfile.display(),
                f.name
            );
        }
        Some(text)
    } else {
        None
    };
    let dir = root.join(&label);
    if dir.exists() {
        bail!("{} exists: pick another name or remove it", dir.display());
    }
    for (file, contents) in template.skeleton(&label) {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().expect("a file in the directory"))?;
        std::fs::write(&path, contents).with_context(|| format!("write {}", path.display()))?;
    }
    let template_name = format!("{template:?}").to_lowercase();
    let entry =
        format!("  - name: {name:?}\n    directory: /{label}\n    template: {template_name}\n");
    let text = match &before {
        Some(t) if t.ends_with('\n') || t.is_empty() => format!("{t}{entry}"),
        Some(t) => format!("{t}\n{entry}"),
        None => format!(
            "# Functions of this repository: `nur build`, `nur deploy`.\nfunctions:\n{entry}"
        ),
    };
    // The entry goes at the end: the nurfile must still read, with it.
    let check = Nurfile::parse(nurfile, root, &text);
    if !check
        .as_ref()
        .is_ok_and(|n| n.functions.iter().any(|f| f.label == label))
    {
        std::fs::remove_dir_all(&dir).ok();
        bail!(
            "{}: cannot add the entry at its end (is `functions:` the last key?); add it yourself:\n{entry}",
            nurfile.display()
        );
    }
    std::fs::write(nurfile, text).with_context(|| format!("write {}", nurfile.display()))?;
    Ok(dir)
}
