//! `data_dir/fleet.state` against the test vector of `FLEET_STATE.md`: a change of
//! `Remote` or `Entry` that would make the files agents already hold unreadable (they would
//! start without their last good configs) fails here.

use super::proto::ConfigStatus;
use super::remote::{Entry, Kind, Remote};

/// The hex of the vector in FLEET_STATE.md: the fenced block after `vector: NAME`, with
/// `#` comments left out.
fn doc_vector(name: &str) -> Vec<u8> {
    let doc = include_str!("FLEET_STATE.md");
    let start = doc
        .find(&format!("vector: {name}"))
        .unwrap_or_else(|| panic!("FLEET_STATE.md has no vector {name}"));
    let block = doc[start..]
        .split("```")
        .nth(1)
        .expect("a fenced block follows");
    let digits: String = block
        .lines()
        .skip(1)
        .flat_map(|l| l.split('#').next().unwrap_or("").chars())
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

/// A data dir holding `fleet.state` = `bytes`.
fn data_dir(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tailbeat-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("fleet.state"), bytes).unwrap();
    d
}

fn entry(version: i64, status: ConfigStatus, message: &str, good: Option<(i64, &str)>) -> Entry {
    Entry {
        version,
        status: status as u8,
        message: message.into(),
        good: good.map(|(v, t)| (v, t.to_string())),
    }
}

#[test]
fn the_vector_of_fleet_state_md_loads_as_it_says() {
    let d = data_dir("fleet-state-vector", &doc_vector("fleet-state"));
    let r = Remote::load(&d);
    let pipelines: Vec<_> = r.entries(Kind::Pipeline).iter().collect();
    assert_eq!(
        pipelines,
        [
            (
                &"app".to_string(),
                &entry(
                    7,
                    ConfigStatus::Applied,
                    "",
                    Some((7, "paths = [\"/x\"]\n"))
                )
            ),
            (
                &"old".to_string(),
                &entry(-1, ConfigStatus::Applied, "", None)
            ),
        ]
    );
    let instances: Vec<_> = r.entries(Kind::Instance).iter().collect();
    assert_eq!(
        instances,
        [(
            &"agent".to_string(),
            &entry(
                2,
                ConfigStatus::Failed,
                "log_level: loud",
                Some((1, "log_level = \"debug\"\n"))
            )
        )]
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn saving_what_the_vector_holds_writes_the_vector_byte_for_byte() {
    let vector = doc_vector("fleet-state");
    let d = data_dir("fleet-state-resave", &vector);
    let r = Remote::load(&d);
    assert!(
        !r.entries(Kind::Pipeline).is_empty(),
        "the vector did not load"
    );
    std::fs::remove_file(d.join("fleet.state")).unwrap();
    r.save().unwrap();
    let written = std::fs::read(d.join("fleet.state")).unwrap();
    assert_eq!(
        written, vector,
        "fleet.state is no longer written as FLEET_STATE.md says: a new format number, and a reader for format 1, are due"
    );
    let _ = std::fs::remove_dir_all(&d);
}
