//! Repository hygiene: every source file says what it is, and the codemap names every module.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_source_file_starts_with_a_doc_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(
            text.starts_with("//! "),
            "{} must start with a //! line saying what it is",
            file.display()
        );
    }
}

#[test]
fn the_codemap_names_every_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("lib.rs");
    let codemap = &lib[..lib
        .find("# Architecture invariants")
        .expect("invariants section")];
    for entry in std::fs::read_dir(root.join("src")).expect("src") {
        let path = entry.expect("entry").path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_owned();
        if name == "lib" {
            continue;
        }
        let mentioned =
            codemap.contains(&format!("[`{name}`]")) || codemap.contains(&format!("`{name}.rs`"));
        assert!(mentioned, "src/lib.rs's codemap does not mention {name}");
    }
}

/// The layers `src/lib.rs` documents, top first: each a list of top-level modules.
fn documented_layers(lib: &str) -> Vec<Vec<String>> {
    let section = &lib[lib
        .find("//! # Layers")
        .expect("a # Layers section in lib.rs")..];
    let start = section.find("//! ```text").expect("a text block of layers") + "//! ```text".len();
    let block = &section[start..];
    let end = block.find("//! ```").expect("the end of the layer block");
    block[..end]
        .lines()
        .map(|line| line.trim_start_matches("//!").trim())
        .filter(|line| !line.is_empty())
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// Every top-level module and the top-level modules its code names (`crate::x`), comments
/// left out.
fn module_graph(
    src: &Path,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph = std::collections::BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(src).expect("under src");
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("name")
            .trim_end_matches(".rs")
            .to_owned();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read");
        let uses: &mut std::collections::BTreeSet<String> = graph.entry(top.clone()).or_default();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            let mut rest = code;
            while let Some(at) = rest.find("crate::") {
                let name: String = rest[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // Helpers at the crate root (`crate::lock`, `crate::error_chain`) are not modules.
                let is_module = src.join(format!("{name}.rs")).exists() || src.join(&name).is_dir();
                if is_module && name != top {
                    uses.insert(name);
                }
                rest = &rest[at + "crate::".len()..];
            }
        }
    }
    graph
}

#[test]
fn imports_only_go_down_the_documented_layers_and_never_in_a_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("lib.rs");
    let layers = documented_layers(&lib);
    let level = |module: &str| {
        layers
            .iter()
            .position(|layer| layer.iter().any(|m| m == module))
    };
    let graph = module_graph(&root.join("src"));
    let mut wrong = Vec::new();
    for (module, uses) in &graph {
        let Some(own) = level(module) else {
            wrong.push(format!("{module} is in no layer of lib.rs"));
            continue;
        };
        for used in uses {
            match level(used) {
                None => wrong.push(format!(
                    "{used} (used by {module}) is in no layer of lib.rs"
                )),
                Some(theirs) if theirs < own => {
                    wrong.push(format!("{module} imports {used}, a layer above it"))
                }
                Some(_) => {}
            }
        }
    }
    // No circle, also within a layer: repeatedly drop modules that use nothing left.
    let mut left = graph.clone();
    loop {
        let leaves: Vec<String> = left
            .iter()
            .filter(|(_, uses)| uses.iter().all(|u| !left.contains_key(u)))
            .map(|(m, _)| m.clone())
            .collect();
        if leaves.is_empty() {
            break;
        }
        for leaf in leaves {
            left.remove(&leaf);
        }
    }
    if !left.is_empty() {
        wrong.push(format!(
            "these modules import each other in a circle: {:?}",
            left.keys().collect::<Vec<_>>()
        ));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_domain_names_no_io_sdk_or_http_crate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src/domain"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        for forbidden in [
            "tokio",
            "reqwest",
            "sqlx",
            "slack_morphism",
            "axum",
            "hyper",
            "std::fs",
            "std::net",
            "std::process",
        ] {
            let code: String = text
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                !code.contains(forbidden),
                "{} names {forbidden}; the domain does no I/O",
                file.display()
            );
        }
    }
}
