//! The control plane's boundary with the agent (module doc, "Boundary"), checked on the
//! sources: a new `use crate::agent::State` would compile only if `State` became visible,
//! but a path to some other part of the agent would not be caught by the compiler.

/// The names `crate::control` may take from `crate::agent`.
const ALLOWED: &[&str] = &["Handle", "Health"];

#[test]
fn the_control_plane_uses_nothing_of_the_agent_but_its_handle() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/control");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        // This file names what it looks for.
        if path.extension().is_none_or(|e| e != "rs") || path.ends_with("boundary_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let mut rest = code;
            while let Some(at) = rest.find("crate::agent::") {
                rest = &rest[at + "crate::agent::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| {
                        c.is_alphanumeric() || *c == '_' || *c == '{' || *c == ',' || *c == ' '
                    })
                    .collect();
                for n in name.split(['{', ',', ' ']).filter(|n| !n.is_empty()) {
                    seen += 1;
                    assert!(
                        ALLOWED.contains(&n),
                        "{}:{}: uses agent::{n}; the control plane reaches the agent through agent::Handle only",
                        path.display(),
                        i + 1
                    );
                }
            }
        }
    }
    assert!(
        seen > 0,
        "no use of agent::Handle found: is this test reading the sources?"
    );
}
