//! The MQTT 3.1.1 client both MQTT users share: the data sink (`sink::mqtt`) and the fleet's
//! control link (`control::over_mqtt`).
//!
//! Owns the protocol rules and how bytes move; never decides what is said (frames, birth and
//! death, heartbeats, statuses are the callers'), never touches the spool or the fleet state.
//! - [`client`]: the protocol as plain state, fed packets, "it was written" and the monotonic
//!   time; it builds the packets to send and says when to wake. No socket, no clock: its unit
//!   tests run in microseconds with no broker.
//! - `wire`: one connection's packets over TCP or TLS (`conn`), every read and write bounded
//!   by a timeout, the receive buffer bounded by the caller's limit.
//!
//! What always holds, whoever uses it:
//! - every session of the sink and the fleet link is clean (`clean_session = true`): whatever
//!   is unacknowledged when a link ends is the caller's to send again (the spool, the pending
//!   report), never the broker's. Only `tailbeat consume` keeps its session
//!   ([`Client::connect_packet_keeping_session`]): there the broker holds what the consumer
//!   has not acknowledged, and the consumer acknowledges a message (with [`Client::ack`],
//!   not the reply [`Client::handle`] offers) only once its output is durable;
//! - a packet id is never 0 and never one still in flight (a publish awaiting its PUBACK or a
//!   subscription awaiting its SUBACK);
//! - a PINGREQ goes out after `keep_alive` without a write or a read, and a link that has
//!   read nothing for 1.5 × `keep_alive` is dead (the broker's own rule, MQTT 3.1.1 §3.1.2.10);
//! - reconnects wait an exponential, jittered, capped backoff, which starts again only once a
//!   link has *proven* itself (the caller says so: something it published was acknowledged),
//!   not when a broker merely accepted the connection: a broker that drops every link after
//!   CONNACK costs a few connects a minute, never a loop.

pub mod client;
pub(crate) mod conn;
pub(crate) mod wire;

pub use client::{Client, Event, Options, ProtocolError};
