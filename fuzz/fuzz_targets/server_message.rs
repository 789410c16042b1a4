//! Any bytes, as every protobuf message the fleet server sends: the answers to a heartbeat,
//! a fetch and a status report over HTTP, and the HeartbeatResponse that arrives on the
//! MQTT config and heartbeat-response topics (`over_mqtt.rs` decodes it the same way).
//! Always a clean error or a message, never a panic; what a message holds is bounded by the
//! bytes it came in; a decoded config status reads back as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tailbeat::control::proto::{
    self, decode_config_info, Fields, ResponseKind, ServerResponse, Value,
};

fuzz_target!(|data: &[u8]| {
    for kind in [
        ResponseKind::Heartbeat,
        ResponseKind::Fetch,
        ResponseKind::Report,
    ] {
        let Ok(r) = ServerResponse::decode(kind, data) else {
            continue;
        };
        if kind == ResponseKind::Report {
            assert!(r.pipeline_updates.is_empty() && r.instance_updates.is_empty());
        }
        // Memory: the heap a message holds is its own bytes (an error message that is not
        // UTF-8 may triple in the lossy conversion), and the number of updates is capped,
        // so that many tiny empty updates cannot make a 4 MiB message many times larger.
        let updates = [&r.pipeline_updates, &r.instance_updates];
        let mut held = r.request_id.len() + r.error_message.len() / 3;
        for list in updates {
            assert!(list.len() <= proto::MAX_UPDATES, "{} updates", list.len());
            held += list
                .iter()
                .map(|d| d.name.len() + d.detail.len())
                .sum::<usize>();
        }
        assert!(held <= data.len(), "{held} bytes held from {}", data.len());
    }
    // A ConfigInfo decoded, encoded again and decoded once more is the same.
    if let Ok(c) = decode_config_info(data) {
        let b = proto::report_config_request(b"", "", std::slice::from_ref(&c));
        let mut fields = Fields(&b);
        match fields.next() {
            Some(Ok((3, Value::Bytes(again)))) => {
                assert_eq!(decode_config_info(again).expect("re-encoded"), c)
            }
            other => panic!("{other:?}"),
        }
        assert!(fields.next().is_none());
    }
});
