//! Any bytes, as a remote config the fleet sends: parsed and checked against a local config
//! by `Remote::update`, as the control plane does with every config detail (pipeline or
//! instance, any version, any name). Always a clean refusal or a config that validates,
//! never a panic; a refusal changes nothing that runs; an accepted pipeline of its own has a
//! name that is safe as a directory.
//!
//! The input: one byte choosing the local config, then up to three updates separated by
//! 0xFF (never in UTF-8 text). Each: one byte choosing the kind and the version, then the
//! name up to a newline, then the detail.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tailbeat::config::{Config, Sink};
use tailbeat::control::remote::{Kind, Remote};

/// Local configs to lay remote ones over: a plain one, and one with a fleet and an MQTT
/// sink (an inherited MQTT sink has its client id taken away).
fn locals() -> &'static [Config; 2] {
    static L: OnceLock<[Config; 2]> = OnceLock::new();
    L.get_or_init(|| {
        let dir = std::env::temp_dir().join("tailbeat-fuzz-remote");
        let d = dir.display();
        [
            format!(
                "data_dir = \"{d}\"\n[[input]]\nname = \"local\"\npaths = [\"/var/log/a.log\"]\n\
                 [sink]\ntype = \"stdout\"\n"
            ),
            format!(
                "data_dir = \"{d}\"\n[[input]]\nname = \"local\"\npaths = [\"/var/log/a.log\"]\n\
                 [sink]\ntype = \"mqtt\"\nurl = \"mqtt://127.0.0.1:1883\"\nclient_id = \"gw\"\n\
                 password = \"s3cret\"\nusername = \"u\"\n\
                 [fleet]\nserver = \"http://127.0.0.1:1/cs\"\ntoken = \"t0ken\"\n"
            ),
        ]
        .map(|t| Config::parse(&t).expect("the local config is valid"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, data)) = data.split_first() else {
        return;
    };
    let local = &locals()[(which & 1) as usize];
    let mut r = Remote::default();
    for part in data.split(|&b| b == 0xff).take(3) {
        let Some((&how, rest)) = part.split_first() else {
            continue;
        };
        let kind = if how & 1 == 0 {
            Kind::Pipeline
        } else {
            Kind::Instance
        };
        let version = [1, 2, -1, 0][(how >> 1 & 3) as usize];
        let (name, text) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        let name = String::from_utf8_lossy(name);
        let before = r.effective(local);
        assert!(before.is_ok(), "what was accepted stays valid: {before:?}");
        match r.update(local, kind, &name, version, text) {
            Ok(cfg) => {
                assert_ne!(version, 0);
                assert_eq!(cfg.validate(), Ok(()));
                assert_eq!(r.effective(local).as_ref(), Ok(&cfg));
                for p in &cfg.pipelines {
                    assert!(
                        !p.name.is_empty()
                            && !p.name.starts_with('.')
                            && !p.name.contains(['/', '\\', '\0']),
                        "{:?}",
                        p.name
                    );
                    if let (Sink::Mqtt(m), Sink::Mqtt(l)) = (&p.sink, &local.sink) {
                        assert!(m.client_id.is_none() || m.client_id != l.client_id);
                    }
                }
                if kind == Kind::Pipeline && version != -1 {
                    let named = |n: &str| n == name;
                    assert!(
                        cfg.inputs.iter().any(|i| named(&i.name))
                            || cfg.pipelines.iter().any(|p| named(&p.name)),
                        "{name:?} runs under its own name"
                    );
                }
            }
            Err(why) => {
                assert!(!why.is_empty());
                assert_eq!(r.effective(local), before, "a refusal changes nothing");
            }
        }
    }
});
