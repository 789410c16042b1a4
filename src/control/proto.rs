//! The ConfigServer protocol v2 messages (`configserver.proto.v2`, proto3), encoded and
//! decoded by hand.
//!
//! Only the messages tailbeat sends or reads, and only their fields; the field numbers are
//! those of upstream `agentV2.proto`, listed in `src/control/agent_v2.proto`. Unknown fields
//! are skipped, as protobuf requires. Hand-written because the whole protocol is a dozen
//! messages of scalars, bytes and repeated sub-messages: a code generator and its runtime
//! would cost more binary than these few hundred lines.

use std::fmt;

/// `ConfigStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConfigStatus {
    /// Not set.
    #[default]
    Unset = 0,
    /// Received, being applied.
    Applying = 1,
    /// Running.
    Applied = 2,
    /// Rejected; the message says why.
    Failed = 3,
}

impl ConfigStatus {
    fn from_i64(v: i64) -> ConfigStatus {
        match v {
            1 => ConfigStatus::Applying,
            2 => ConfigStatus::Applied,
            3 => ConfigStatus::Failed,
            _ => ConfigStatus::Unset,
        }
    }
    /// The upstream enum name.
    pub fn name(self) -> &'static str {
        match self {
            ConfigStatus::Unset => "UNSET",
            ConfigStatus::Applying => "APPLYING",
            ConfigStatus::Applied => "APPLIED",
            ConfigStatus::Failed => "FAILED",
        }
    }
}

/// `AgentCapabilities` bits.
pub mod agent_caps {
    /// AcceptsContinuousPipelineConfig.
    pub const PIPELINE_CONFIG: u64 = 1;
    /// AcceptsInstanceConfig.
    pub const INSTANCE_CONFIG: u64 = 2;
}
/// `RequestFlags::FullState`.
pub const REQUEST_FULL_STATE: u64 = 1;
/// `ResponseFlags` bits.
pub mod response_flags {
    /// ReportFullState.
    pub const REPORT_FULL_STATE: u64 = 1;
    /// FetchContinuousPipelineConfigDetail.
    pub const FETCH_PIPELINE_DETAIL: u64 = 2;
    /// FetchInstanceConfigDetail.
    pub const FETCH_INSTANCE_DETAIL: u64 = 4;
}

/// `ConfigInfo`: one config's name, version and status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigInfo {
    /// 1
    pub name: String,
    /// 2
    pub version: i64,
    /// 3
    pub status: ConfigStatus,
    /// 4
    pub message: String,
}

/// `ConfigDetail`: a config sent by the server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigDetail {
    /// 1
    pub name: String,
    /// 2: −1 deletes.
    pub version: i64,
    /// 3: empty when the server wants it fetched.
    pub detail: Vec<u8>,
}

/// `AgentAttributes`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    /// 1
    pub version: String,
    /// 2
    pub ip: String,
    /// 3
    pub hostname: String,
    /// 4
    pub hostid: String,
    /// 100: map<string, bytes>, in this order.
    pub extras: Vec<(String, Vec<u8>)>,
}

/// `HeartbeatRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeartbeatRequest {
    /// 1
    pub request_id: Vec<u8>,
    /// 2
    pub sequence_num: u64,
    /// 3
    pub capabilities: u64,
    /// 4
    pub instance_id: String,
    /// 5
    pub agent_type: String,
    /// 6
    pub attributes: Option<Attributes>,
    /// 7: `AgentGroupTag{name, value}`.
    pub tags: Vec<(String, String)>,
    /// 8
    pub running_status: String,
    /// 9: Unix seconds.
    pub startup_time: i64,
    /// 10
    pub pipeline_configs: Vec<ConfigInfo>,
    /// 11
    pub instance_configs: Vec<ConfigInfo>,
    /// 13
    pub flags: u64,
}

/// `HeartbeatResponse` and `FetchConfigResponse`, which share what tailbeat reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerResponse {
    /// request_id
    pub request_id: Vec<u8>,
    /// common_response.status: non-zero means "retry", and the rest is empty.
    pub status: i32,
    /// common_response.errorMessage
    pub error_message: String,
    /// capabilities (heartbeat only)
    pub capabilities: u64,
    /// continuous_pipeline_config_updates
    pub pipeline_updates: Vec<ConfigDetail>,
    /// instance_config_updates
    pub instance_updates: Vec<ConfigDetail>,
    /// flags (heartbeat only)
    pub flags: u64,
}

/// The most config updates one response may carry in each list; more is a malformed
/// message. An update costs 2 bytes on the wire and a 56-byte [`ConfigDetail`] decoded, so
/// without a cap a message at the size limit (`fleet.max_message_bytes`, `http::MAX_BODY`:
/// 4 MiB) of empty updates would hold over 100 MiB; with it, at most ~115 KiB more than its
/// own bytes. A fleet sends an agent a handful of configs.
pub const MAX_UPDATES: usize = 1024;

/// Which response a body is, for field numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    /// `HeartbeatResponse`.
    Heartbeat,
    /// `FetchConfigResponse`.
    Fetch,
    /// `ReportConfigResponse` or `ReportStatusResponse` (the same two fields).
    Report,
}

/// A body that is not the protobuf message it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed protobuf: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

// ---- encoding ----

/// A protobuf message being written.
#[derive(Debug, Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    fn raw_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn key(&mut self, field: u32, wire: u8) {
        self.raw_varint((field as u64) << 3 | wire as u64);
    }
    /// A varint field; proto3 leaves zeros out.
    pub fn varint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, 0);
            self.raw_varint(v);
        }
    }
    /// An int64/int32 field: negative values are sign-extended to ten bytes.
    pub fn int(&mut self, field: u32, v: i64) {
        self.varint(field, v as u64);
    }
    /// A bytes or string field; proto3 leaves empty ones out.
    pub fn bytes(&mut self, field: u32, b: &[u8]) {
        if !b.is_empty() {
            self.key(field, 2);
            self.raw_varint(b.len() as u64);
            self.0.extend_from_slice(b);
        }
    }
    /// A sub-message field, written even when empty (presence matters).
    pub fn message(&mut self, field: u32, f: impl FnOnce(&mut Writer)) {
        let mut sub = Writer::default();
        f(&mut sub);
        self.key(field, 2);
        self.raw_varint(sub.0.len() as u64);
        self.0.extend_from_slice(&sub.0);
    }
}

fn config_info(w: &mut Writer, c: &ConfigInfo) {
    w.bytes(1, c.name.as_bytes());
    w.int(2, c.version);
    w.varint(3, c.status as u64);
    w.bytes(4, c.message.as_bytes());
}

fn config_infos(w: &mut Writer, field: u32, cs: &[ConfigInfo]) {
    for c in cs {
        w.message(field, |w| config_info(w, c));
    }
}

impl HeartbeatRequest {
    /// The wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.bytes(1, &self.request_id);
        w.varint(2, self.sequence_num);
        w.varint(3, self.capabilities);
        w.bytes(4, self.instance_id.as_bytes());
        w.bytes(5, self.agent_type.as_bytes());
        if let Some(a) = &self.attributes {
            w.message(6, |w| {
                w.bytes(1, a.version.as_bytes());
                w.bytes(2, a.ip.as_bytes());
                w.bytes(3, a.hostname.as_bytes());
                w.bytes(4, a.hostid.as_bytes());
                for (k, v) in &a.extras {
                    w.message(100, |w| {
                        w.bytes(1, k.as_bytes());
                        w.bytes(2, v);
                    });
                }
            });
        }
        for (n, v) in &self.tags {
            w.message(7, |w| {
                w.bytes(1, n.as_bytes());
                w.bytes(2, v.as_bytes());
            });
        }
        w.bytes(8, self.running_status.as_bytes());
        w.int(9, self.startup_time);
        config_infos(&mut w, 10, &self.pipeline_configs);
        config_infos(&mut w, 11, &self.instance_configs);
        w.varint(13, self.flags);
        w.0
    }
}

/// `ReportConfigRequest{request_id, instance_id, config_infos}`.
pub fn report_config_request(
    request_id: &[u8],
    instance_id: &str,
    infos: &[ConfigInfo],
) -> Vec<u8> {
    let mut w = Writer::default();
    w.bytes(1, request_id);
    w.bytes(2, instance_id.as_bytes());
    config_infos(&mut w, 3, infos);
    w.0
}

/// Upstream's `ReportStatusRequest` (`/Agent/ReportStatus`): request_id 1, instance_id 2,
/// continuous_pipeline_configs 3, instance_configs 4 (onetime_pipeline_configs 5 unused).
/// Its answer, `ReportStatusResponse` (request_id 1, common_response 2), decodes as
/// [`ResponseKind::Report`].
pub fn report_status_request(
    request_id: &[u8],
    instance_id: &str,
    pipelines: &[ConfigInfo],
    instances: &[ConfigInfo],
) -> Vec<u8> {
    let mut w = Writer::default();
    w.bytes(1, request_id);
    w.bytes(2, instance_id.as_bytes());
    config_infos(&mut w, 3, pipelines);
    config_infos(&mut w, 4, instances);
    w.0
}

/// `FetchConfigRequest` for pipeline configs (field 3) or instance configs (field 4): the
/// same message on `/Agent/Fetch{Pipeline,Instance}Config` and on upstream's
/// `/Agent/FetchConfig`, whose `FetchConfigResponse` numbers its lists the same way.
pub fn fetch_config_request(
    request_id: &[u8],
    instance_id: &str,
    instance: bool,
    infos: &[ConfigInfo],
) -> Vec<u8> {
    let mut w = Writer::default();
    w.bytes(1, request_id);
    w.bytes(2, instance_id.as_bytes());
    config_infos(&mut w, if instance { 4 } else { 3 }, infos);
    w.0
}

// ---- decoding ----

/// One field of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 2.
    Bytes(&'a [u8]),
    /// Wire types 1 and 5, which no field read here uses.
    Fixed,
}

/// The fields of a message, in wire order.
#[derive(Debug, Clone)]
pub struct Fields<'a>(pub &'a [u8]);

fn read_varint(b: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&byte, rest) = b.split_first().ok_or(DecodeError("truncated varint"))?;
        *b = rest;
        v |= ((byte & 0x7f) as u64) << (7 * i);
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err(DecodeError("varint longer than 10 bytes"))
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), DecodeError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let r = (|| {
            let key = read_varint(&mut self.0)?;
            let field = (key >> 3) as u32;
            let v = match key & 7 {
                0 => Value::Varint(read_varint(&mut self.0)?),
                2 => {
                    let n = read_varint(&mut self.0)?;
                    if n > self.0.len() as u64 {
                        return Err(DecodeError("length past the end of the message"));
                    }
                    let (b, rest) = self.0.split_at(n as usize);
                    self.0 = rest;
                    Value::Bytes(b)
                }
                1 | 5 => {
                    let n = if key & 7 == 1 { 8 } else { 4 };
                    if self.0.len() < n {
                        return Err(DecodeError("truncated fixed-size field"));
                    }
                    self.0 = &self.0[n..];
                    Value::Fixed
                }
                _ => return Err(DecodeError("unknown wire type")),
            };
            Ok((field, v))
        })();
        if r.is_err() {
            self.0 = &[];
        }
        Some(r)
    }
}

fn bytes(v: Value<'_>) -> Result<&[u8], DecodeError> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err(DecodeError("expected a length-delimited field")),
    }
}

fn varint(v: Value<'_>) -> Result<u64, DecodeError> {
    match v {
        Value::Varint(n) => Ok(n),
        _ => Err(DecodeError("expected a varint field")),
    }
}

fn string(v: Value<'_>) -> Result<String, DecodeError> {
    String::from_utf8(bytes(v)?.to_vec()).map_err(|_| DecodeError("string field is not UTF-8"))
}

fn config_detail(b: &[u8]) -> Result<ConfigDetail, DecodeError> {
    let mut d = ConfigDetail::default();
    for f in Fields(b) {
        match f? {
            (1, v) => d.name = string(v)?,
            (2, v) => d.version = varint(v)? as i64,
            (3, v) => d.detail = bytes(v)?.to_vec(),
            _ => {}
        }
    }
    Ok(d)
}

/// Decodes a `ConfigInfo` (the test double and the status channel's readers use it).
pub fn decode_config_info(b: &[u8]) -> Result<ConfigInfo, DecodeError> {
    let mut c = ConfigInfo::default();
    for f in Fields(b) {
        match f? {
            (1, v) => c.name = string(v)?,
            (2, v) => c.version = varint(v)? as i64,
            (3, v) => c.status = ConfigStatus::from_i64(varint(v)? as i64),
            (4, v) => c.message = string(v)?,
            _ => {}
        }
    }
    Ok(c)
}

/// Pushes `x` to `v` unless `v` already holds `max`: what is past the limit was decoded (so
/// checked) but is not kept.
#[cfg(any(test, feature = "fleet"))]
fn keep<T>(v: &mut Vec<T>, max: usize, x: T) {
    if v.len() < max {
        v.push(x);
    }
}

// The agent sends heartbeats and never reads one: only the fleet viewer (and the round-trip
// tests) decode them, so the default build does not carry this.
#[cfg(any(test, feature = "fleet"))]
impl HeartbeatRequest {
    /// Decodes the bytes [`HeartbeatRequest::encode`] makes, or another agent's. Each repeated
    /// field (extras, tags, each config list) keeps at most `max_list` entries; those past
    /// it are decoded, so a bad one is still an error, and dropped: a message of empty
    /// entries (two bytes each) cannot grow thirty-fold in memory. An extra's key that is
    /// not UTF-8 is taken with U+FFFD in place (an extra is the agent's to add: it does not
    /// make a heartbeat bad); every other text must be UTF-8.
    ///
    /// # Errors
    ///
    /// Bytes that are not protobuf, a known field of the wrong wire type, or text that is
    /// not UTF-8: [`DecodeError`].
    pub fn decode(b: &[u8], max_list: usize) -> Result<HeartbeatRequest, DecodeError> {
        let mut h = HeartbeatRequest::default();
        for f in Fields(b) {
            match f? {
                (1, v) => h.request_id = bytes(v)?.to_vec(),
                (2, v) => h.sequence_num = varint(v)?,
                (3, v) => h.capabilities = varint(v)?,
                (4, v) => h.instance_id = string(v)?,
                (5, v) => h.agent_type = string(v)?,
                (6, v) => {
                    let mut a = Attributes::default();
                    for f in Fields(bytes(v)?) {
                        match f? {
                            (1, v) => a.version = string(v)?,
                            (2, v) => a.ip = string(v)?,
                            (3, v) => a.hostname = string(v)?,
                            (4, v) => a.hostid = string(v)?,
                            (100, v) => {
                                let (mut k, mut val) = (&[][..], &[][..]);
                                for f in Fields(bytes(v)?) {
                                    match f? {
                                        (1, v) => k = bytes(v)?,
                                        (2, v) => val = bytes(v)?,
                                        _ => {}
                                    }
                                }
                                let k = String::from_utf8_lossy(k).into_owned();
                                keep(&mut a.extras, max_list, (k, val.to_vec()));
                            }
                            _ => {}
                        }
                    }
                    h.attributes = Some(a);
                }
                (7, v) => {
                    let (mut n, mut val) = (String::new(), String::new());
                    for f in Fields(bytes(v)?) {
                        match f? {
                            (1, v) => n = string(v)?,
                            (2, v) => val = string(v)?,
                            _ => {}
                        }
                    }
                    keep(&mut h.tags, max_list, (n, val));
                }
                (8, v) => h.running_status = string(v)?,
                (9, v) => h.startup_time = varint(v)? as i64,
                (10, v) => keep(
                    &mut h.pipeline_configs,
                    max_list,
                    decode_config_info(bytes(v)?)?,
                ),
                (11, v) => keep(
                    &mut h.instance_configs,
                    max_list,
                    decode_config_info(bytes(v)?)?,
                ),
                (13, v) => h.flags = varint(v)?,
                _ => {}
            }
        }
        Ok(h)
    }
}

impl ServerResponse {
    /// Decodes a response of `kind`.
    pub fn decode(kind: ResponseKind, b: &[u8]) -> Result<ServerResponse, DecodeError> {
        // Field numbers of the config update lists in each message.
        let (pipelines, instances) = match kind {
            ResponseKind::Heartbeat => (4, 5),
            ResponseKind::Fetch => (3, 4),
            ResponseKind::Report => (0, 0),
        };
        let mut r = ServerResponse::default();
        for f in Fields(b) {
            let (n, v) = f?;
            match n {
                1 => r.request_id = bytes(v)?.to_vec(),
                2 => {
                    for f in Fields(bytes(v)?) {
                        match f? {
                            (1, v) => r.status = varint(v)? as i32,
                            (2, v) => {
                                r.error_message = String::from_utf8_lossy(bytes(v)?).into_owned()
                            }
                            _ => {}
                        }
                    }
                }
                3 if kind == ResponseKind::Heartbeat => r.capabilities = varint(v)?,
                7 if kind == ResponseKind::Heartbeat => r.flags = varint(v)?,
                n if n == pipelines && n != 0 => {
                    if r.pipeline_updates.len() == MAX_UPDATES {
                        return Err(DecodeError(
                            "more than MAX_UPDATES (1024) config updates in one list",
                        ));
                    }
                    r.pipeline_updates.push(config_detail(bytes(v)?)?)
                }
                n if n == instances && n != 0 => {
                    if r.instance_updates.len() == MAX_UPDATES {
                        return Err(DecodeError(
                            "more than MAX_UPDATES (1024) config updates in one list",
                        ));
                    }
                    r.instance_updates.push(config_detail(bytes(v)?)?)
                }
                _ => {}
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The pair of bytes seen from a real ConfigServer (configserver-v2 notes).
    #[test]
    fn matches_the_bytes_of_a_real_server() {
        let req = HeartbeatRequest {
            request_id: b"c4".to_vec(),
            sequence_num: 4,
            instance_id: "rust-edge-agent-0001".into(),
            ..Default::default()
        };
        assert_eq!(
            req.encode(),
            hex("0a02633410042214727573742d656467652d6167656e742d30303031")
        );
        let r =
            ServerResponse::decode(ResponseKind::Heartbeat, &hex("0a026334120018073802")).unwrap();
        assert_eq!(r.request_id, b"c4");
        assert_eq!(r.status, 0);
        assert_eq!(r.capabilities, 7);
        assert_eq!(r.flags, response_flags::FETCH_PIPELINE_DETAIL);
    }

    #[test]
    fn negative_versions_and_statuses_round_trip() {
        let mut w = Writer::default();
        w.message(4, |w| {
            w.bytes(1, b"app");
            w.int(2, -1);
        });
        w.message(2, |w| {
            w.int(1, -3);
            w.bytes(2, b"busy");
        });
        let r = ServerResponse::decode(ResponseKind::Heartbeat, &w.0).unwrap();
        assert_eq!(r.pipeline_updates[0].name, "app");
        assert_eq!(r.pipeline_updates[0].version, -1);
        assert_eq!((r.status, r.error_message.as_str()), (-3, "busy"));
        let info = ConfigInfo {
            name: "n".into(),
            version: -1,
            status: ConfigStatus::Failed,
            message: "why".into(),
        };
        let b = report_config_request(b"r", "i", std::slice::from_ref(&info));
        let mut it = Fields(&b);
        assert_eq!(it.next().unwrap().unwrap(), (1, Value::Bytes(b"r")));
        assert_eq!(it.next().unwrap().unwrap(), (2, Value::Bytes(b"i")));
        let (n, v) = it.next().unwrap().unwrap();
        assert_eq!(n, 3);
        assert_eq!(decode_config_info(bytes(v).unwrap()).unwrap(), info);
    }

    #[test]
    fn a_report_status_request_numbers_its_lists_as_upstream() {
        let p = ConfigInfo {
            name: "p".into(),
            version: 2,
            status: ConfigStatus::Applied,
            message: String::new(),
        };
        let i = ConfigInfo {
            name: "i".into(),
            version: -1,
            status: ConfigStatus::Failed,
            message: "m".into(),
        };
        let b = report_status_request(
            b"r",
            "id",
            std::slice::from_ref(&p),
            std::slice::from_ref(&i),
        );
        let fields: Vec<_> = Fields(&b).map(|f| f.unwrap()).collect();
        assert_eq!(fields[0], (1, Value::Bytes(b"r")));
        assert_eq!(fields[1], (2, Value::Bytes(b"id")));
        match (fields[2], fields[3]) {
            ((3, Value::Bytes(a)), (4, Value::Bytes(b))) => {
                assert_eq!(decode_config_info(a).unwrap(), p);
                assert_eq!(decode_config_info(b).unwrap(), i);
            }
            other => panic!("{other:?}"),
        }
    }

    /// Found by reading what the `server_message` fuzz target asserts: an empty update is
    /// two bytes on the wire and a 56-byte `ConfigDetail` decoded, so a 4 MiB message of them
    /// (`fleet.max_message_bytes`, `http::MAX_BODY`) held over 100 MiB.
    #[test]
    fn many_empty_updates_cannot_multiply_a_message_in_memory() {
        // The keys of an empty pipeline update and an empty instance update, per message.
        for (kind, keys) in [
            (ResponseKind::Heartbeat, [0x22, 0x2a]),
            (ResponseKind::Fetch, [0x1a, 0x22]),
        ] {
            for key in keys {
                let empties = |n: usize| [key, 0x00].repeat(n);
                let r = ServerResponse::decode(kind, &empties(100)).unwrap();
                assert_eq!(r.pipeline_updates.len() + r.instance_updates.len(), 100);
                match ServerResponse::decode(kind, &empties(1 << 16)) {
                    Ok(r) => panic!(
                        "{} updates decoded",
                        r.pipeline_updates.len() + r.instance_updates.len()
                    ),
                    Err(e) => assert!(e.to_string().contains("config updates"), "{e}"),
                }
            }
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for b in [&[0x0a, 0x05, 1][..], &[0xff; 11], &[0x0b], &[0x12, 0x01]] {
            assert!(
                ServerResponse::decode(ResponseKind::Heartbeat, b).is_err(),
                "{b:?}"
            );
        }
        // Unknown fields are skipped, fixed-size ones included.
        let r = ServerResponse::decode(
            ResponseKind::Fetch,
            &[0x79, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 1, b'x'],
        );
        assert_eq!(r.unwrap().request_id, b"x");
    }
    fn full_heartbeat() -> HeartbeatRequest {
        let info = |name: &str, version, status, message: &str| ConfigInfo {
            name: name.into(),
            version,
            status,
            message: message.into(),
        };
        HeartbeatRequest {
            request_id: vec![0, 0xff, 7],
            sequence_num: 1 << 40,
            capabilities: 0b101,
            instance_id: "gw-1".into(),
            agent_type: "tailbeat".into(),
            attributes: Some(Attributes {
                version: "0.1.0".into(),
                ip: "10.0.0.7".into(),
                hostname: "gw-1.plant-7".into(),
                hostid: "h".into(),
                extras: vec![
                    ("os".into(), b"linux".to_vec()),
                    ("health.spool_bytes".into(), b"4096".to_vec()),
                    ("raw".into(), vec![0, 0xff]),
                ],
            }),
            tags: vec![("site".into(), "plant-7".into()), ("é".into(), "".into())],
            running_status: "running".into(),
            startup_time: -5,
            pipeline_configs: vec![
                info("app", 3, ConfigStatus::Failed, "bad path"),
                info("gone", -1, ConfigStatus::Applied, ""),
            ],
            instance_configs: vec![info("inst", 1, ConfigStatus::Applying, "")],
            flags: 1,
        }
    }

    #[test]
    fn a_heartbeat_decodes_to_what_was_encoded() {
        for h in [
            full_heartbeat(),
            HeartbeatRequest::default(),
            HeartbeatRequest {
                attributes: Some(Attributes::default()),
                ..Default::default()
            },
        ] {
            assert_eq!(HeartbeatRequest::decode(&h.encode(), 64).unwrap(), h);
        }
        // Unknown fields (12, a fixed-size 14) are skipped.
        let mut b = full_heartbeat().encode();
        b.extend_from_slice(&[0x62, 1, b'x', 0x75, 0, 0, 0, 0]);
        assert_eq!(HeartbeatRequest::decode(&b, 64).unwrap(), full_heartbeat());
    }

    #[test]
    fn a_heartbeat_keeps_max_list_entries_per_list_and_still_checks_the_rest() {
        let h = full_heartbeat();
        let d = HeartbeatRequest::decode(&h.encode(), 1).unwrap();
        assert_eq!(
            d.attributes.unwrap().extras,
            h.attributes.unwrap().extras[..1]
        );
        assert_eq!(d.tags, h.tags[..1]);
        assert_eq!(d.pipeline_configs, h.pipeline_configs[..1]);
        assert_eq!(d.instance_configs, h.instance_configs);
        // A million empty config entries, two bytes each: 64 kept.
        let b = [0x52, 0].repeat(1 << 20);
        let d = HeartbeatRequest::decode(&b, 64).unwrap();
        assert_eq!(d.pipeline_configs.len(), 64);
        // A bad entry past the limit is still an error.
        let mut b = HeartbeatRequest {
            tags: vec![("a".into(), "b".into())],
            ..Default::default()
        }
        .encode();
        b.extend_from_slice(&[0x3a, 3, 0x0a, 1, 0xff]);
        assert_eq!(
            HeartbeatRequest::decode(&b, 1),
            Err(DecodeError("string field is not UTF-8"))
        );
    }

    #[test]
    fn a_bad_heartbeat_is_an_error_but_an_extras_bad_key_is_not() {
        for b in [
            &b"\xff\xff\xff"[..],
            &[0x12, 0x05, 1],
            &[0x10, 0x80],
            &[0x22, 1, 0xff],
            // instance_id (4) as a varint.
            &[0x20, 1],
        ] {
            assert!(HeartbeatRequest::decode(b, 64).is_err(), "{b:?}");
        }
        let mut w = Writer::default();
        w.message(6, |w| {
            w.message(100, |w| {
                w.bytes(1, &[b'k', 0xff]);
                w.bytes(2, b"v");
            })
        });
        let d = HeartbeatRequest::decode(&w.0, 64).unwrap();
        assert_eq!(
            d.attributes.unwrap().extras,
            [("k\u{fffd}".to_string(), b"v".to_vec())]
        );
    }
}
