//! `tailbeat consume`: the reference consumer of the frames agents publish over MQTT, and
//! what a user scales out (several in one `--group`, a `$share` subscription).
//!
//! Owns its MQTT session (clean session off, a stable client id, QoS 1 subscriptions), its
//! state directory (the marks, a lock) and its output (stdout, or one JSON-lines file per
//! stream). Touches nothing of the agent's: it is a separate process that shares the frame
//! decoder ([`crate::frame`]) and the MQTT client core ([`crate::mqtt`]).
//!
//! - [`marks`]: the dedup rule as plain state: one high-water mark per stream; a frame at
//!   or below its stream's mark is a repeat, a frame more than one above it is a gap (counted
//!   and reported as possible loss). Memory: one entry per stream, never per frame.
//! - [`store`]: the output and the marks on disk: a snapshot, and a journal of the streams
//!   each batch moved (so a save costs what changed, not the number of streams), folded
//!   into a new snapshot at start-up, at a clean stop, and when it outgrows the snapshot.
//! - this file: the session loop (connect, subscribe, read, write, acknowledge, back off).
//!
//! What always holds:
//! - a message is acknowledged (PUBACK) only after its lines are durable (fsynced files, or
//!   flushed stdout) and the marks that cover them are saved: a crash before the PUBACK
//!   means the broker delivers it again, and the marks drop it;
//! - with `--out DIR`, output bytes past the length saved with the marks are cut at
//!   start-up ([`store`]), so a crash between writing and saving the marks costs a rewrite,
//!   never a line twice. On stdout that window remains: a line may be printed twice after a
//!   crash at that instant, never lost;
//! - memory: the marks (per stream), and one batch of messages (at most [`BATCH`] of them
//!   and [`BATCH_BYTES`], read as they arrived together), each at most
//!   [`frame::MAX_PAYLOAD`] and its header;
//! - reconnects back off (0.5 s doubling to 60 s, jittered), reset only once a link has
//!   carried a message; keep-alive 30 s, a dead link noticed in 45 s;
//! - what it creates is private (umask 077), as the agent's files are.

pub mod marks;
pub mod store;

use crate::config::{endpoint, Tls};
use crate::frame;
use crate::mqtt::client::{Client, Event, Hello, Options, Tick};
use crate::mqtt::wire::{Incoming, Wire};
use marks::{Marks, Verdict};
use rumqttc::mqttbytes::v4::Packet;
use rumqttc::mqttbytes::QoS;
use smol::future::FutureExt;
use smol::stream::StreamExt;
use std::fmt;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use store::{Store, StoreError};

/// Most messages written out and acknowledged together.
pub const BATCH: usize = 64;
/// A batch stops growing past this many payload bytes.
pub const BATCH_BYTES: usize = 4 << 20;
/// The keep-alive announced in CONNECT.
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Longest wait for a connect, a write, or a CONNACK / SUBACK.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The command line of `tailbeat consume`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// `mqtt://HOST:PORT` or `mqtts://...`.
    pub broker: String,
    /// Topic filters; by default `tailbeat/+/frames` and `tailbeat/+/+/frames`.
    pub topics: Vec<String>,
    /// A `$share` group, if any.
    pub group: Option<String>,
    /// The MQTT client id; by default one made up once and kept in the state directory.
    pub client_id: Option<String>,
    /// An output directory; `None` is stdout.
    pub out: Option<PathBuf>,
    /// The state directory (marks, client id, lock).
    pub state: PathBuf,
}

/// The default topic filters: a pipeline's frames and a fleet pipeline's.
pub const DEFAULT_TOPICS: [&str; 2] = ["tailbeat/+/frames", "tailbeat/+/+/frames"];

impl Args {
    /// Parses what follows `tailbeat consume`.
    pub fn parse(args: &[String]) -> Result<Args, String> {
        let mut a = Args {
            broker: String::new(),
            topics: Vec::new(),
            group: None,
            client_id: None,
            out: None,
            state: default_state().to_path_buf(),
        };
        crate::flags::walk(args, |arg, k, val| {
            match k {
                "--broker" => a.broker = val()?,
                "--topic" => a.topics.push(val()?),
                "--group" => a.group = Some(val()?),
                "--client-id" => a.client_id = Some(val()?),
                "--out" => {
                    let v = val()?;
                    a.out = (v != "-").then(|| PathBuf::from(v));
                }
                "--state" => a.state = PathBuf::from(val()?),
                _ => return Err(format!("unknown option {arg:?}")),
            }
            Ok(())
        })?;
        if a.broker.is_empty() {
            return Err("consume needs --broker mqtt://HOST:PORT".into());
        }
        endpoint::mqtt(&a.broker).map_err(|e| format!("--broker: {e}"))?;
        if let Some(g) = &a.group {
            if g.is_empty() || g.contains(['/', '+', '#']) {
                return Err(format!(
                    "--group: a name without '/', '+' or '#', got {g:?}"
                ));
            }
        }
        if a.topics.is_empty() {
            a.topics = DEFAULT_TOPICS.iter().map(|t| t.to_string()).collect();
        }
        Ok(a)
    }

    /// The filters to subscribe to: the topics, each under `$share/G/` in a group.
    pub fn filters(&self) -> Vec<String> {
        self.topics
            .iter()
            .map(|t| match &self.group {
                Some(g) => format!("$share/{g}/{t}"),
                None => t.clone(),
            })
            .collect()
    }
}

/// Why the consumer stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConsumeError {
    /// The state or the output could not be read or written.
    Store(StoreError),
    /// The broker refused a subscription: retrying would not change it.
    Refused {
        /// The filter.
        filter: String,
    },
    /// Signal handlers could not be installed.
    Signals(std::io::Error),
}

impl fmt::Display for ConsumeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsumeError::Store(e) => e.fmt(f),
            ConsumeError::Refused { filter } if filter.starts_with("$share/") => write!(
                f,
                "the broker refused the subscription to {filter} (does it support shared subscriptions, and allow this client to read the topic?)"
            ),
            ConsumeError::Refused { filter } => {
                write!(f, "the broker refused the subscription to {filter}")
            }
            ConsumeError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
        }
    }
}

impl std::error::Error for ConsumeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConsumeError::Store(e) => Some(e),
            ConsumeError::Signals(e) => Some(e),
            ConsumeError::Refused { .. } => None,
        }
    }
}

impl From<StoreError> for ConsumeError {
    fn from(e: StoreError) -> Self {
        ConsumeError::Store(e)
    }
}

/// What the consumer has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Frames written out.
    pub frames: u64,
    /// Lines written out.
    pub lines: u64,
    /// Frames dropped as repeats.
    pub repeats: u64,
    /// Gaps: frames that followed their stream's mark by more than one.
    pub gaps: u64,
    /// Seqs skipped in those gaps (possible loss).
    pub missing: u64,
    /// Messages that were not a frame (damaged, another kind, too large): acknowledged and
    /// dropped, since a redelivery would not mend them.
    pub bad: u64,
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} frames ({} lines) written, {} repeats dropped, {} gaps ({} frames possibly lost), {} bad messages",
            self.frames, self.lines, self.repeats, self.gaps, self.missing, self.bad
        )
    }
}

/// What one message comes to, decided by [`judge`] from the marks alone.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// Write it out (and advance the mark).
    Write {
        /// The decoded frame.
        batch: frame::Batch<'a>,
        /// Seqs skipped since the stream's mark.
        missing: u64,
    },
    /// A repeat: acknowledge only.
    Repeat,
    /// Not a frame: acknowledge, count, say why.
    Bad(frame::FrameError),
}

/// Decodes a message's payload (inflating it with `dec` when the frame is compressed, as an
/// agent's frames are by default) and judges it against the marks; changes nothing.
pub fn judge<'a>(m: &Marks, dec: &'a mut frame::Decoder, payload: &'a [u8]) -> Outcome<'a> {
    match dec.batch(payload) {
        Err(e) => Outcome::Bad(e),
        Ok(b) => match m.judge(b.instance, b.seq) {
            Verdict::Repeat => Outcome::Repeat,
            Verdict::New { missing } => Outcome::Write { batch: b, missing },
        },
    }
}

/// One message of a batch: where it came from, its id to acknowledge, its payload.
struct Msg {
    topic: String,
    pkid: u16,
    qos: QoS,
    /// `None`: too large to hold, dropped as it arrived.
    payload: Option<bytes::Bytes>,
}

/// The consumer: its session state, its files, its counts.
struct Consumer {
    args: Args,
    client: Client,
    hello: Hello,
    store: Store,
    marks: Marks,
    counts: Counts,
}

/// How a link ended.
enum End {
    /// SIGTERM / SIGINT: stop.
    Stop,
    /// The link failed; reconnect after the backoff.
    Lost(String),
}

/// Runs the consumer until SIGTERM or SIGINT; returns what it did.
///
/// # Errors
/// The state or output cannot be read or written (nothing written since the last PUBACK
/// is lost: the broker delivers it again), or the broker refuses the subscription.
pub fn run(args: Args) -> Result<Counts, ConsumeError> {
    // The output holds every shipped line (perhaps from a 0640 auth.log): private, as the
    // agent's files are, whatever umask it was started with.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let (store, marks) = Store::open(&args.state, args.out.as_deref())?;
    for (stream, n) in &store.recovered {
        log::info!(
            "consume: stream {stream:?}: cut {n} bytes written after its last saved mark (the broker delivers them again)"
        );
    }
    let client_id = client_id(&args)?;
    let signals =
        async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int])
            .map_err(ConsumeError::Signals)?;
    let now = Instant::now();
    let mut c = Consumer {
        client: Client::new(
            &Options {
                keep_alive: KEEP_ALIVE,
                window: 1,
                backoff_base: Duration::from_millis(500),
                backoff_cap: Duration::from_secs(60),
                endpoints: 1,
                failback_after: Duration::ZERO,
            },
            now,
        ),
        hello: Hello {
            client_id,
            will: None,
            login: None,
        },
        args,
        store,
        marks,
        counts: Counts::default(),
    };
    log::info!(
        "consume: {} stream mark(s) in {}; client id {:?}",
        c.marks.len(),
        c.args.state.display(),
        c.hello.client_id
    );
    smol::block_on(c.run(signals))?;
    // Everything acknowledged is in the journal already; this only leaves `marks` whole.
    c.store.close(&mut c.marks)?;
    log::info!("consume: stopped: {}", c.counts);
    Ok(c.counts)
}

/// The client id: `--client-id`, or the one kept in the state directory, or a new one
/// (kept there for the next start: the broker keeps the session under it).
fn client_id(a: &Args) -> Result<String, ConsumeError> {
    let p = a.state.join("client-id");
    let e = |what| {
        let p = p.clone();
        move |source| {
            ConsumeError::Store(StoreError {
                what,
                path: p,
                source,
            })
        }
    };
    if let Some(id) = &a.client_id {
        std::fs::write(&p, format!("{id}\n")).map_err(e("write"))?;
        return Ok(id.clone());
    }
    match std::fs::read_to_string(&p) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(x) if x.kind() == std::io::ErrorKind::NotFound => {}
        Err(x) => return Err(e("read")(x)),
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let id = format!(
        "tailbeat-consume-{:08x}",
        (nanos as u64 ^ ((std::process::id() as u64) << 32)) as u32
    );
    std::fs::write(&p, format!("{id}\n")).map_err(e("write"))?;
    Ok(id)
}

impl Consumer {
    async fn run(&mut self, mut signals: async_signal::Signals) -> Result<(), ConsumeError> {
        let e = endpoint::mqtt(&self.args.broker).expect("checked by Args::parse");
        loop {
            if let Err(wait) = self.client.connecting(Instant::now()) {
                let stop = async {
                    signals.next().await;
                    true
                }
                .or(async {
                    smol::Timer::after(wait).await;
                    false
                })
                .await;
                if stop {
                    return Ok(());
                }
                continue;
            }
            // A signal stops a connect that hangs (up to three timeouts) at once.
            let opened = async { Some(self.open(&e).await) }
                .or(async {
                    signals.next().await;
                    None
                })
                .await;
            let end = match opened {
                None => return Ok(()),
                Some(Ok((wire, pending))) => self.session(wire, pending, &mut signals).await?,
                Some(Err(Err(fatal))) => return Err(fatal),
                Some(Err(Ok(why))) => End::Lost(why),
            };
            match end {
                End::Stop => return Ok(()),
                End::Lost(why) => {
                    let d = self.client.link_lost(Instant::now()).after;
                    // A failed connect names the broker already.
                    let at = if why.starts_with("connect to") {
                        String::new()
                    } else {
                        format!("{e}: ")
                    };
                    log::warn!("consume: {at}{why}; reconnecting in {} ms", d.as_millis());
                }
            }
        }
    }

    /// Connects, keeping the session, and subscribes. Messages the broker sends before the
    /// SUBACK (held for the session while away) come back to be processed first.
    /// `Err(Ok(why))`: retry; `Err(Err(e))`: stop.
    #[allow(clippy::type_complexity)]
    async fn open(
        &mut self,
        e: &endpoint::Endpoint,
    ) -> Result<(Wire, Vec<Msg>), Result<String, ConsumeError>> {
        let addr = (e.host.as_str(), e.port)
            .to_socket_addrs()
            .map_err(|x| Ok(format!("resolve {}: {x}", e.host)))?
            .next()
            .ok_or_else(|| Ok(format!("resolve {}: no address", e.host)))?;
        let max = frame::MAX_PAYLOAD + frame::HEADER_LEN + (64 << 10);
        let mut w = Wire::open(addr, e, &Tls::default(), TIMEOUT, max)
            .await
            .map_err(Ok)?;
        let hello = self.client.connect_packet_keeping_session(&self.hello);
        w.write(hello, TIMEOUT).await.map_err(Ok)?;
        self.client.wrote(Instant::now());
        let p = w.read(TIMEOUT).await.map_err(Ok)?;
        self.client
            .handle(p, Instant::now())
            .map_err(|x| Ok(x.to_string()))?;
        let filters = self.args.filters();
        let s = self
            .client
            .subscribe(&filters, Instant::now())
            .map_err(|x| Ok(x.to_string()))?;
        w.write(s, TIMEOUT).await.map_err(Ok)?;
        let mut pending = Vec::new();
        loop {
            let p = w.read_or_skip(TIMEOUT).await.map_err(Ok)?;
            match self.take(p, &mut pending) {
                Some(refused) if !refused.is_empty() => {
                    return Err(Err(ConsumeError::Refused {
                        filter: refused.join(", "),
                    }))
                }
                Some(_) => break,
                None => {}
            }
        }
        log::info!(
            "consume: connected to {e} as {:?}, subscribed to {}",
            self.hello.client_id,
            filters.join(", ")
        );
        Ok((w, pending))
    }

    /// Gives a packet to the core; a message joins `batch`. Returns a SUBACK's refused
    /// filters.
    fn take(&mut self, p: Incoming, batch: &mut Vec<Msg>) -> Option<Vec<String>> {
        match p {
            Incoming::TooLarge {
                topic, pkid, qos, ..
            } => batch.push(Msg {
                topic,
                pkid,
                qos,
                payload: None,
            }),
            Incoming::Packet(p) => match self.client.handle(p, Instant::now()) {
                // The reply offered is not written: the PUBACK waits for the output.
                Ok(Event::Message { publish, .. }) => batch.push(Msg {
                    topic: publish.topic,
                    pkid: publish.pkid,
                    qos: publish.qos,
                    payload: Some(publish.payload),
                }),
                Ok(Event::Subscribed { refused }) => return Some(refused),
                Ok(_) => {}
                Err(x) => log::debug!("consume: {x}; ignored"),
            },
        }
        None
    }

    async fn session(
        &mut self,
        mut w: Wire,
        mut batch: Vec<Msg>,
        signals: &mut async_signal::Signals,
    ) -> Result<End, ConsumeError> {
        loop {
            // Take what is already whole in the buffer: it arrived together.
            let mut bytes: usize = batch
                .iter()
                .map(|m| m.payload.as_ref().map_or(0, |p| p.len()))
                .sum();
            while batch.len() < BATCH && bytes < BATCH_BYTES {
                match w.read_buffered() {
                    Ok(Some(p)) => {
                        self.take(Incoming::Packet(p), &mut batch);
                        bytes = batch
                            .iter()
                            .map(|m| m.payload.as_ref().map_or(0, |p| p.len()))
                            .sum();
                    }
                    Ok(None) => break,
                    Err(e) => return Ok(End::Lost(e)),
                }
            }
            if !batch.is_empty() {
                let acks = self.process(&mut batch)?;
                for a in acks {
                    if let Err(e) = w.queue(a) {
                        return Ok(End::Lost(format!("encode: {e}")));
                    }
                }
                if let Err(e) = w.flush(TIMEOUT).await {
                    return Ok(End::Lost(e));
                }
                self.client.wrote(Instant::now());
                // The link carried what it is for: once it has lived `STABLE`, the backoff
                // starts again.
                self.client.proven();
                continue;
            }
            match self.client.tick(Instant::now()) {
                Tick::Idle => {}
                Tick::Ping(p) => {
                    if let Err(e) = w.write(p, TIMEOUT).await {
                        return Ok(End::Lost(e));
                    }
                }
                Tick::Dead => {
                    return Ok(End::Lost(
                        "no answer from the broker in 1.5 × keep-alive".into(),
                    ))
                }
            }
            let d = self
                .client
                .wake_at()
                .map_or(KEEP_ALIVE, |t| t.saturating_duration_since(Instant::now()));
            enum Got {
                Read(Result<Incoming, String>),
                Timer,
                Signal,
            }
            let got = async { Got::Read(w.read_or_skip(Duration::from_secs(86_400)).await) }
                .or(async {
                    smol::Timer::after(d).await;
                    Got::Timer
                })
                .or(async {
                    signals.next().await;
                    Got::Signal
                })
                .await;
            match got {
                Got::Read(Ok(p)) => {
                    self.take(p, &mut batch);
                }
                Got::Read(Err(e)) => return Ok(End::Lost(e)),
                Got::Timer => {}
                Got::Signal => {
                    // Everything acknowledged is durable; the rest the broker keeps.
                    let _ = w.write(Packet::Disconnect, TIMEOUT).await;
                    self.client.disconnected(Instant::now());
                    return Ok(End::Stop);
                }
            }
        }
    }

    fn process(&mut self, batch: &mut Vec<Msg>) -> Result<Vec<Packet>, ConsumeError> {
        let group = self.args.group.is_some();
        process(
            &mut self.store,
            &mut self.marks,
            &mut self.counts,
            group,
            batch,
        )
    }
}

/// Where [`process`] puts lines: the [`Store`], or a test's record of the calls.
trait Output {
    /// Writes a frame's lines, not yet durable.
    fn write(&mut self, b: &frame::Batch<'_>) -> Result<(), StoreError>;
    /// Makes what was written durable, then saves the marks.
    fn sync(&mut self, m: &mut Marks) -> Result<(), StoreError>;
}

impl Output for Store {
    fn write(&mut self, b: &frame::Batch<'_>) -> Result<(), StoreError> {
        Store::write(self, b)
    }
    fn sync(&mut self, m: &mut Marks) -> Result<(), StoreError> {
        Store::sync(self, m)
    }
}

/// Writes out the new frames of `batch`, makes them durable with their marks, and returns
/// the PUBACKs owed (every QoS 1 message of it, repeats and bad ones too), emptying
/// `batch`. On an error nothing is acknowledged (the broker delivers it all again) and
/// the batch is left as it was.
fn process(
    out: &mut impl Output,
    marks: &mut Marks,
    counts: &mut Counts,
    group: bool,
    batch: &mut Vec<Msg>,
) -> Result<Vec<Packet>, ConsumeError> {
    let mut wrote = false;
    let mut dec = frame::Decoder::default();
    for m in batch.iter() {
        let Some(payload) = &m.payload else {
            counts.bad += 1;
            log::warn!(
                "consume: {}: a message over the frame size limit; dropped",
                m.topic
            );
            continue;
        };
        match judge(marks, &mut dec, payload) {
            Outcome::Bad(e) => {
                counts.bad += 1;
                log::warn!("consume: {}: not a frame ({e}); dropped", m.topic);
            }
            Outcome::Repeat => counts.repeats += 1,
            Outcome::Write { batch: b, missing } => {
                if missing > 0 {
                    counts.gaps += 1;
                    counts.missing += missing;
                    let mark = b.seq - missing - 1;
                    if group {
                        // In a group the other members hold the seqs between: a gap here
                        // is the norm, not a sign of loss.
                        log::debug!(
                            "consume: stream {:?}: seq {} after {mark} ({missing} held elsewhere in the group, or lost)",
                            b.instance, b.seq
                        );
                    } else {
                        log::warn!(
                            "consume: stream {:?}: seq {} after {mark}: {missing} frame(s) missing, possible loss ({} gaps, {} frames so far)",
                            b.instance, b.seq, counts.gaps, counts.missing
                        );
                    }
                }
                out.write(&b)?;
                marks.advance(b.instance, b.seq);
                counts.frames += 1;
                counts.lines += b.lines.len() as u64;
                wrote = true;
            }
        }
    }
    if wrote {
        out.sync(marks)?;
    }
    Ok(batch
        .drain(..)
        .filter_map(|m| Client::ack(m.pkid, m.qos))
        .collect())
}

/// The default state directory, relative to the working directory.
pub fn default_state() -> &'static Path {
    Path::new("tailbeat-consume")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        Args::parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn a_group_shares_every_topic_and_the_defaults_cover_fleet_pipelines() {
        let a = args("--broker mqtt://127.0.0.1:1883 --group g1").unwrap();
        assert_eq!(
            a.filters(),
            vec![
                "$share/g1/tailbeat/+/frames",
                "$share/g1/tailbeat/+/+/frames"
            ]
        );
        assert_eq!(a.out, None);
        assert_eq!(a.state, default_state());
        let a =
            args("--broker=mqtt://h --topic x/+/frames --out - --state /s --client-id c").unwrap();
        assert_eq!(a.filters(), vec!["x/+/frames"]);
        assert_eq!(
            (a.out, a.state, a.client_id.as_deref()),
            (None, PathBuf::from("/s"), Some("c"))
        );
        assert_eq!(
            args("--broker mqtt://h --out d").unwrap().out,
            Some("d".into())
        );
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        assert!(args("").unwrap_err().contains("--broker"));
        assert!(args("--broker http://h").unwrap_err().contains("--broker"));
        assert!(args("--broker mqtt://h --group a/b")
            .unwrap_err()
            .contains("--group"));
        assert!(args("--broker mqtt://h --frob")
            .unwrap_err()
            .contains("--frob"));
        assert!(args("--broker").unwrap_err().contains("needs a value"));
    }

    /// An output that records what it was asked, and fails its sync when told to.
    #[derive(Default)]
    struct Record {
        calls: Vec<String>,
        fail_sync: bool,
    }

    impl Output for Record {
        fn write(&mut self, b: &frame::Batch<'_>) -> Result<(), StoreError> {
            self.calls.push(format!("write {} {}", b.instance, b.seq));
            Ok(())
        }
        fn sync(&mut self, m: &mut Marks) -> Result<(), StoreError> {
            self.calls
                .push(format!("sync {}", m.get("s").map_or(0, |k| k.seq)));
            if self.fail_sync {
                return Err(StoreError {
                    what: "fsync",
                    path: "out".into(),
                    source: std::io::Error::other("disk full"),
                });
            }
            Ok(())
        }
    }

    fn msg(pkid: u16, payload: &[u8]) -> Msg {
        Msg {
            topic: "t".into(),
            pkid,
            qos: QoS::AtLeastOnce,
            payload: Some(bytes::Bytes::copy_from_slice(payload)),
        }
    }

    fn ids(acks: &[Packet]) -> Vec<u16> {
        acks.iter()
            .map(|p| match p {
                Packet::PubAck(a) => a.pkid,
                p => panic!("{p:?}"),
            })
            .collect()
    }

    #[test]
    fn pubacks_come_only_after_one_sync_that_covers_the_batch_repeats_and_bad_ones_included() {
        let (mut out, mut m, mut c) = (Record::default(), Marks::default(), Counts::default());
        let f = |seq| store::tests::batch("s", seq, "x");
        let mut batch = vec![
            msg(1, &f(1)),
            msg(2, &f(2)),
            msg(3, &f(2)),
            msg(4, b"junk"),
            msg(5, &f(5)),
        ];
        let acks = process(&mut out, &mut m, &mut c, false, &mut batch).unwrap();
        assert_eq!(ids(&acks), vec![1, 2, 3, 4, 5]);
        // Written in order, then one sync with the marks already at the last frame.
        assert_eq!(out.calls, ["write s 1", "write s 2", "write s 5", "sync 5"]);
        assert_eq!(
            c,
            Counts {
                frames: 3,
                lines: 3,
                repeats: 1,
                gaps: 1,
                missing: 2,
                bad: 1
            }
        );
        assert!(batch.is_empty());
        // Nothing new: no sync (no fsync for a batch of repeats), and still acknowledged.
        let mut out = Record::default();
        let mut batch = vec![msg(6, &f(5)), msg(7, b"junk")];
        let acks = process(&mut out, &mut m, &mut c, false, &mut batch).unwrap();
        assert_eq!(ids(&acks), vec![6, 7]);
        assert!(out.calls.is_empty(), "{:?}", out.calls);
    }

    #[test]
    fn a_failed_sync_acknowledges_nothing() {
        let mut out = Record {
            fail_sync: true,
            ..Record::default()
        };
        let (mut m, mut c) = (Marks::default(), Counts::default());
        let mut batch = vec![msg(1, b"junk"), msg(2, &store::tests::batch("s", 1, "x"))];
        let e = process(&mut out, &mut m, &mut c, false, &mut batch).unwrap_err();
        assert!(e.to_string().contains("disk full"), "{e}");
        assert_eq!(batch.len(), 2, "kept: the broker delivers it all again");
    }

    #[test]
    fn judge_writes_new_frames_drops_repeats_and_names_bad_ones() {
        let mut m = Marks::default();
        let mut d = frame::Decoder::default();
        let f = store::tests::batch("s", 5, "x");
        assert!(matches!(
            judge(&m, &mut d, &f),
            Outcome::Write { missing: 0, ref batch } if batch.seq == 5 && batch.instance == "s"
        ));
        m.advance("s", 5);
        assert!(matches!(judge(&m, &mut d, &f), Outcome::Repeat));
        let g = store::tests::batch("s", 9, "y");
        assert!(matches!(
            judge(&m, &mut d, &g),
            Outcome::Write { missing: 3, .. }
        ));
        assert!(matches!(judge(&m, &mut d, b"junk"), Outcome::Bad(_)));
        // A checkpoint frame is a frame, but not one a consumer writes out.
        let c = frame::encode_checkpoint(&frame::Checkpoint {
            next_seq: 1,
            acked_seq: 0,
            files: vec![],
        });
        assert!(matches!(judge(&m, &mut d, &c), Outcome::Bad(_)));
    }

    /// Agents compress frames by default (lz4): the consumer reads them like plain ones.
    #[cfg(feature = "lz4")]
    #[test]
    fn a_compressed_frame_is_read_like_a_plain_one() {
        let src = frame::SourceRef {
            path: "/var/log/x.log",
            dev: 1,
            ino: 2,
            fp_len: 0,
            fp: 0,
        };
        let mut b = frame::BatchBuilder::new(1000, 1 << 20);
        b.set_codec(frame::Codec::Lz4);
        let text = "a line that repeats itself, so that it compresses well";
        let mut at = 0;
        for _ in 0..100 {
            let end = at + text.len() as u64 + 1;
            assert!(b.push(&src, at, end, 1_764_000_000_000, 0, text.as_bytes()));
            at = end;
        }
        let f = b.finish("s", 1);
        assert_eq!(
            frame::Decoder::default().payload(&f).unwrap().0.codec(),
            frame::Codec::Lz4
        );
        let m = Marks::default();
        let mut d = frame::Decoder::default();
        match judge(&m, &mut d, &f) {
            Outcome::Write { batch, missing: 0 } => assert_eq!(batch.lines.len(), 100),
            other => panic!("{}", matches!(other, Outcome::Bad(_))),
        }
    }
}
