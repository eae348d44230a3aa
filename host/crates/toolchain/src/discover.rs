//! Finding the plugins under `plugins/`: a directory with a `Cargo.toml` is a Rust plugin, a
//! directory with a `pyproject.toml` (or the marker file `riposte-python`) is a Python plugin,
//! and a directory with a `package.json` that has a `riposte` key is a JavaScript or TypeScript
//! plugin.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Error;

/// The language a plugin is written in, which decides how it is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// A cargo package (`crate-type = ["cdylib"]`), member of the plugins workspace.
    Rust,
    /// A Python module built with componentize-py.
    Python,
    /// A JavaScript or TypeScript module built with jco and componentize-js.
    #[serde(rename = "javascript")]
    JavaScript,
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::JavaScript => "javascript",
        })
    }
}

/// One plugin found under the plugins directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginSource {
    /// The plugin's name: the cargo package name, or the Python project's name; the output is
    /// `<name>.wasm`.
    pub name: String,
    /// The plugin's directory.
    pub dir: PathBuf,
    /// How it is built.
    pub language: Language,
    /// Rust: the file stem cargo gives the cdylib (the lib name, `-` replaced by `_`).
    /// Python: the module componentize-py loads (`[tool.riposte] module`, default `app`).
    /// JavaScript: the entry file, relative to `dir` (`riposte.entry` in `package.json`,
    /// default `app.ts` or `app.js`).
    pub artifact: String,
}

/// The marker file that makes a directory without `pyproject.toml` a Python plugin.
pub(crate) const PYTHON_MARKER: &str = "riposte-python";

/// Lists the plugins directly under `plugins_dir`, sorted by name. Directories that are not
/// plugins (and `target`, `node_modules`, hidden directories) are skipped.
pub fn discover(plugins_dir: &Path) -> Result<Vec<PluginSource>, Error> {
    let entries = std::fs::read_dir(plugins_dir).map_err(|source| Error::Io {
        context: format!("reading the plugins directory {}", plugins_dir.display()),
        source,
    })?;
    let mut plugins = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            context: format!("reading the plugins directory {}", plugins_dir.display()),
            source,
        })?;
        let dir = entry.path();
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if !dir.is_dir()
            || file_name.starts_with('.')
            || file_name == "target"
            || file_name == "node_modules"
        {
            continue;
        }
        if let Some(plugin) = plugin_at(&dir)? {
            plugins.push(plugin);
        }
    }
    plugins.sort_by(|a, b| a.name.cmp(&b.name));
    for pair in plugins.windows(2) {
        if pair[0].name == pair[1].name {
            return Err(Error::InvalidPlugin {
                plugin: pair[0].name.clone(),
                dir: pair[1].dir.clone(),
                detail: format!("the name is also used by {}", pair[0].dir.display()),
            });
        }
    }
    Ok(plugins)
}

/// The plugin in `dir` itself (for plugins kept outside the plugins directory, such as the
/// hostile plugin of the sandbox tests); `None` if `dir` holds no plugin.
pub(crate) fn plugin_at(dir: &Path) -> Result<Option<PluginSource>, Error> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if dir.join("Cargo.toml").is_file() {
        rust_plugin(dir).map(Some)
    } else if dir.join("pyproject.toml").is_file() || dir.join(PYTHON_MARKER).is_file() {
        python_plugin(dir, &name).map(Some)
    } else if dir.join("package.json").is_file() {
        js_plugin(dir, &name)
    } else {
        Ok(None)
    }
}

/// The JavaScript plugin in `dir`: `package.json` with a `riposte` object; `None` when the
/// file has no `riposte` key (an ordinary npm package, not a plugin).
fn js_plugin(dir: &Path, dir_name: &str) -> Result<Option<PluginSource>, Error> {
    let path = dir.join("package.json");
    let invalid = |detail: String| Error::InvalidPlugin {
        plugin: dir_name.to_owned(),
        dir: dir.to_owned(),
        detail,
    };
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        context: format!("reading {}", path.display()),
        source,
    })?;
    let manifest: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| invalid(format!("package.json is not valid JSON: {e}")))?;
    let Some(riposte) = manifest.get("riposte") else {
        return Ok(None);
    };
    let name = manifest
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or(dir_name)
        .to_owned();
    let entry = match riposte.get("entry") {
        Some(entry) => entry
            .as_str()
            .ok_or_else(|| invalid("package.json: `riposte.entry` must be a file name".into()))?
            .to_owned(),
        None => ["app.ts", "app.js"]
            .into_iter()
            .find(|f| dir.join(f).is_file())
            .unwrap_or("app.js")
            .to_owned(),
    };
    if !dir.join(&entry).is_file() {
        return Err(invalid(format!(
            "the entry module `{entry}` does not exist; set `riposte.entry` in package.json"
        )));
    }
    Ok(Some(PluginSource {
        name,
        dir: dir.to_owned(),
        language: Language::JavaScript,
        artifact: entry,
    }))
}

fn read_toml(dir: &Path, file: &str, plugin: &str) -> Result<toml::Table, Error> {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        context: format!("reading {}", path.display()),
        source,
    })?;
    text.parse::<toml::Table>()
        .map_err(|e| Error::InvalidPlugin {
            plugin: plugin.to_owned(),
            dir: dir.to_owned(),
            detail: format!("{file} is not valid TOML: {e}"),
        })
}

fn rust_plugin(dir: &Path) -> Result<PluginSource, Error> {
    let dir_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let manifest = read_toml(dir, "Cargo.toml", &dir_name)?;
    let name = manifest
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .ok_or_else(|| Error::InvalidPlugin {
            plugin: dir_name.clone(),
            dir: dir.to_owned(),
            detail: "Cargo.toml has no [package] name".into(),
        })?
        .to_owned();
    let lib = manifest.get("lib");
    let crate_types: Vec<&str> = lib
        .and_then(|l| l.get("crate-type"))
        .and_then(|t| t.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if !crate_types.contains(&"cdylib") {
        return Err(Error::InvalidPlugin {
            plugin: name,
            dir: dir.to_owned(),
            detail: "a Rust plugin needs `[lib] crate-type = [\"cdylib\"]` in its Cargo.toml"
                .into(),
        });
    }
    let artifact = lib
        .and_then(|l| l.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or(&name)
        .replace('-', "_");
    Ok(PluginSource {
        name,
        dir: dir.to_owned(),
        language: Language::Rust,
        artifact,
    })
}

fn python_plugin(dir: &Path, dir_name: &str) -> Result<PluginSource, Error> {
    let (name, module) = if dir.join("pyproject.toml").is_file() {
        let project = read_toml(dir, "pyproject.toml", dir_name)?;
        let name = project
            .get("project")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or(dir_name)
            .to_owned();
        let module = project
            .get("tool")
            .and_then(|t| t.get("riposte"))
            .and_then(|r| r.get("module"))
            .and_then(|m| m.as_str())
            .unwrap_or("app")
            .to_owned();
        (name, module)
    } else {
        (dir_name.to_owned(), "app".to_owned())
    };
    if !dir.join(format!("{module}.py")).is_file() && !dir.join(&module).is_dir() {
        return Err(Error::InvalidPlugin {
            plugin: name,
            dir: dir.to_owned(),
            detail: format!(
                "the Python module `{module}` ({module}.py) does not exist; set [tool.riposte] module in pyproject.toml"
            ),
        });
    }
    Ok(PluginSource {
        name,
        dir: dir.to_owned(),
        language: Language::Python,
        artifact: module,
    })
}

/// The examples of the guest SDK (`[[example]]` names in `guest-sdk/Cargo.toml`), built with
/// the Rust plugins so they stay real. Empty when there is no SDK next to the plugins.
pub(crate) fn sdk_examples(sdk_dir: &Path) -> Result<Vec<String>, Error> {
    if !sdk_dir.join("Cargo.toml").is_file() {
        return Ok(Vec::new());
    }
    let manifest = read_toml(sdk_dir, "Cargo.toml", "riposte-guest")?;
    Ok(manifest
        .get("example")
        .and_then(|e| e.as_array())
        .map(|examples| {
            examples
                .iter()
                .filter_map(|e| e.get("name").and_then(|n| n.as_str()))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default())
}
