//! The agent's identity on the server survives short heartbeats (issue 10, defect 2).
//!
//! A real ConfigServer (LoongCollector's, in Go) stores agent_type, startup_time, tags and
//! the attributes from every heartbeat as sent; this test keeps what each heartbeat the
//! test double received says, the same way, and checks it after every short one.

mod common;
use common::configserver::*;
use common::*;

/// What a server that stores every heartbeat as sent knows of the agent after `h`.
#[derive(Debug, PartialEq)]
struct Stored {
    agent_type: String,
    startup_time: i64,
    tags: Vec<(String, String)>,
    /// version, ip, hostname, hostid, os, arch.
    attrs: Vec<Option<String>>,
}

fn stored(h: &Heartbeat) -> Stored {
    Stored {
        agent_type: h.agent_type.clone(),
        startup_time: h.startup_time,
        tags: h.tags.clone(),
        attrs: ["version", "ip", "hostname", "hostid", "os", "arch"]
            .iter()
            .map(|k| h.attrs.get(*k).cloned())
            .collect(),
    }
}

#[test]
fn the_identity_the_server_stored_survives_short_heartbeats() {
    let s = Scratch::new("fleet-identity");
    let cs = ConfigServer::start();
    let cfg = fleet_config(
        &s,
        &cs.url(),
        "heartbeat_interval = \"1s\"\nagent_type = \"tailbeat-gw\"\ntags = { site = \"plant-7\", role = \"gw\" }",
        "",
    );
    let agent = Agent::start(&s, &cfg);
    let hbs = cs.wait_heartbeats(4, 20);
    assert!(hbs.len() >= 4, "{} heartbeats", hbs.len());
    let first = &hbs[0];
    assert_eq!(first.flags, 1, "the first heartbeat is full");
    let known = stored(first);
    assert_eq!(known.agent_type, "tailbeat-gw");
    assert!(known.startup_time > 1_700_000_000);
    assert_eq!(
        known.tags,
        [
            ("role".into(), "gw".into()),
            ("site".into(), "plant-7".into())
        ]
    );
    assert_eq!(known.attrs[0].as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(known.attrs[1].as_deref(), Some("127.0.0.1"));
    assert!(known
        .attrs
        .iter()
        .all(|a| a.as_deref().is_some_and(|v| !v.is_empty())));
    for h in &hbs[1..] {
        assert_eq!(h.flags, 0, "heartbeat {} is short", h.seq);
        assert_eq!(stored(h), known, "after heartbeat {}", h.seq);
        // Short, still: no config statuses, and the health figures.
        assert!(h.pipelines.is_empty() && h.instances.is_empty());
        assert!(h.attrs.contains_key("health.rss_bytes"));
    }
    agent.stop();
}
