//! The rooms of `src/` and the imports between them that must never exist, read from the
//! source as ARCHITECTURE.md draws them: every `crate::<room>` a file of one room names (in a
//! `use` or a path; comment lines aside) is an edge from its room to that one. A forbidden
//! edge, or a circle between rooms, fails naming the file and line.
//!
//! The few edges the redesign has not yet removed are listed in `KNOWN`, each with what removes
//! it; they are kept out of the checks, and the test fails too when one of them is gone, so
//! the list shrinks as the house is tidied and never hides a new import.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Rooms that are the commands and the wiring over everything: they may import any room.
const TOP: &[&str] = &["cli", "registry", "decoders", "process"];

/// (room, rooms it must never import, why); room `*` is every room but `train`'s one client,
/// continual training (and the `TOP` rooms, which no rule binds).
const RULES: &[(&str, &[&str], &str)] = &[
    (
        "*",
        &["train"],
        "nothing imports the loop except continual training and the commands",
    ),
    (
        "*",
        &["follow"],
        "continual training is above the loop: only the commands start it",
    ),
    (
        "data",
        &[
            "cli", "serve", "export", "report", "run", "follow", "model", "weights",
        ],
        "data is read without knowing models, runs or commands",
    ),
    (
        "task",
        &[
            "cli", "serve", "export", "report", "run", "follow", "model", "weights",
        ],
        "a task is losses and metrics, nothing that uses them",
    ),
    (
        "model",
        &[
            "cli", "serve", "export", "report", "run", "follow", "weights",
        ],
        "a model is built from config and data spec alone",
    ),
    (
        "run",
        &["export", "serve", "report", "cli", "registry"],
        "the run directory is a format, below everything that reads it",
    ),
    (
        "export",
        &["serve", "report"],
        "using a model is below serving and reporting",
    ),
];

/// Edges that still exist, and what removes them (issue 40).
const KNOWN: &[(&str, &str, &str)] = &[
    (
        "export",
        "train",
        "the model handle (`train::Net`) moves to model/, with the loop's part split off",
    ),
    (
        "registry",
        "train",
        "the registry builds `train::Held`; it builds model/'s handle once that moves",
    ),
    (
        "config",
        "registry",
        "config/ is handed what it needs to resolve a kind's keys instead of asking the registry",
    ),
];

/// The room a file of `src/` is in: its folder under `src/`, or its own name.
fn room(src: &Path, file: &Path) -> Option<String> {
    let first = file.strip_prefix(src).ok()?.components().next()?;
    let name = first
        .as_os_str()
        .to_str()?
        .trim_end_matches(".rs")
        .to_string();
    (name != "lib" && name != "main").then_some(name)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::<room>` a line names, `use crate::{a, b}` included.
fn named_rooms(line: &str) -> Vec<String> {
    let mut rooms = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let group = rest.strip_prefix('{').map(|group| {
            let end = group.find('}').unwrap_or(group.len());
            group[..end].split(',').map(str::trim).collect::<Vec<_>>()
        });
        let names = group.unwrap_or_else(|| vec![rest]);
        for name in names {
            let ident: String = name
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // Modules are lower case; `crate::Error` and other items of lib.rs are no room.
            if ident.starts_with(|c: char| c.is_ascii_lowercase()) {
                rooms.push(ident);
            }
        }
    }
    rooms
}

/// Edges between rooms, each with the places (file:line) that make it.
fn edges(src: &Path) -> BTreeMap<(String, String), Vec<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut edges: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for file in files {
        let Some(from) = room(src, &file) else {
            continue;
        };
        let text = fs::read_to_string(&file).unwrap();
        for (index, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for to in named_rooms(line) {
                if to != from {
                    let place = format!("{}:{}", file.display(), index + 1);
                    edges.entry((from.clone(), to)).or_default().push(place);
                }
            }
        }
    }
    edges
}

/// A circle among `edges`, as the rooms around it, if there is one.
fn circle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges {
        next.entry(from).or_default().push(to);
    }
    // Depth-first, with the path on the stack: meeting a room on the path closes a circle.
    fn visit<'a>(
        room: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|&r| r == room) {
            let mut circle: Vec<String> = path[at..].iter().map(|r| r.to_string()).collect();
            circle.push(room.to_string());
            return Some(circle);
        }
        if !done.insert(room) {
            return None;
        }
        path.push(room);
        for &to in next.get(room).into_iter().flatten() {
            if let Some(circle) = visit(to, next, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    next.keys()
        .find_map(|&room| visit(room, &next, &mut Vec::new(), &mut done))
}

/// What is wrong with the rooms of `src`, one line each.
fn violations(src: &Path) -> Vec<String> {
    let edges = edges(src);
    let known = |from: &str, to: &str| KNOWN.iter().any(|&(f, t, _)| f == from && t == to);
    let mut found = Vec::new();
    for ((from, to), places) in &edges {
        if TOP.contains(&from.as_str()) || known(from, to) {
            continue;
        }
        for &(room, forbidden, why) in RULES {
            let applies = room == from || (room == "*" && from != "follow");
            if applies && forbidden.contains(&to.as_str()) {
                found.push(format!("{} imports {to}: {why}", places.join(", ")));
            }
        }
    }
    for &(from, to, removes) in KNOWN {
        if !edges.contains_key(&(from.to_string(), to.to_string())) {
            found.push(format!(
                "{from} no longer imports {to} ({removes}): take it off KNOWN in tests/rooms.rs"
            ));
        }
    }
    let checked: BTreeSet<(String, String)> = edges
        .keys()
        .filter(|(from, to)| !TOP.contains(&from.as_str()) && !known(from, to))
        .cloned()
        .collect();
    if let Some(circle) = circle(&checked) {
        let places: Vec<String> = circle
            .windows(2)
            .map(|pair| {
                let key = (pair[0].clone(), pair[1].clone());
                format!("{} -> {} ({})", pair[0], pair[1], edges[&key][0])
            })
            .collect();
        found.push(format!("a circle between rooms: {}", places.join(", ")));
    }
    found
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_room_imports_what_it_must_not_and_no_rooms_import_each_other() {
    let found = violations(&src());
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// A copy of `src/` with one line added to one file: the check must fail on it.
fn planted(file: &str, line: &str) -> Vec<String> {
    fn copy(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let target = to.join(path.file_name().unwrap());
            if path.is_dir() {
                copy(&path, &target);
            } else {
                fs::copy(&path, &target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let copied = dir.path().join("src");
    copy(&src(), &copied);
    let path = copied.join(file);
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, format!("{line}\n{text}")).unwrap();
    violations(&copied)
}

#[test]
fn a_planted_import_is_named_with_its_file_and_line() {
    let found = planted("serve/api.rs", "use crate::train::Experiment;");
    assert!(
        found
            .iter()
            .any(|v| v.contains("serve/api.rs:1 imports train")),
        "{found:?}"
    );
    let found = planted("run/dir.rs", "use crate::{Error, serve};");
    assert!(
        found
            .iter()
            .any(|v| v.contains("run/dir.rs:1 imports serve")),
        "{found:?}"
    );
    // A circle: data importing the run directory, which imports data.
    let found = planted("data/mod.rs", "use crate::run::RunDir;");
    assert!(
        found
            .iter()
            .any(|v| v.starts_with("a circle between rooms")),
        "{found:?}"
    );
}
