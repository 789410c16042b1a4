//! Counters: every line read, every frame sent, and every loss, by reason; and, in
//! [`latency`], the per-stage latency figures and the alerts read from them.
//!
//! Plain integers on the one pipeline thread; no atomics needed. Fixed size whatever the
//! load: the latency window and each pipeline's timestamps have their limits in their types
//! ([`latency`]'s module doc).

pub mod latency;

/// What the agent has done since it started.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Lines taken into frames.
    pub lines_read: u64,
    /// Bytes consumed from files (newlines included).
    pub bytes_read: u64,
    /// Lines cut at `max_line_bytes`.
    pub lines_cut: u64,
    /// Bytes thrown away from cut lines.
    pub cut_bytes: u64,
    /// Last lines sent without a newline after `partial_flush`.
    pub partial_lines: u64,
    /// Files opened for tailing.
    pub files_opened: u64,
    /// Files seen renamed or deleted (rotation).
    pub files_rotated: u64,
    /// Files seen truncated (copytruncate or a plain truncate).
    pub files_truncated: u64,
    /// Unread bytes lost to a truncation with no copy to recover them from.
    pub truncated_lost_bytes: u64,
    /// Unread bytes lost because a file vanished (deleted or rotated away) before it was read.
    pub vanished_lost_bytes: u64,
    /// Frames written to the spool.
    pub frames_spooled: u64,
    /// Frames handed to the sink (retransmissions included).
    pub frames_sent: u64,
    /// Frames the sink acknowledged.
    pub frames_acked: u64,
    /// Lines in acknowledged frames.
    pub lines_acked: u64,
    /// Failed sink operations (each one leads to a retry after a backoff).
    pub send_errors: u64,
    /// Frames the HTTP sink set aside in `dead-letter.frames` (refused with a 4xx).
    pub dead_letters: u64,
    /// Frames a sink refused as too large (HTTP 413), cut into smaller frames under new
    /// sequence numbers: none of their lines is lost, and they are counted in
    /// `lines_acked` when the smaller frames are acknowledged.
    pub frames_split: u64,
    /// Control messages (remote configs) that were not valid protobuf, ignored.
    pub bad_control_messages: u64,
    /// Frames deleted unsent by `on_full = "drop_oldest"`.
    pub dropped_frames: u64,
    /// Lines in those frames.
    pub dropped_lines: u64,
    /// Spool records found corrupt or torn at start-up (or when read back).
    pub corrupt_records: u64,
    /// Bytes in those records.
    pub corrupt_bytes: u64,
    /// fsyncs that made frames durable before they were sent (one covers every frame
    /// appended since the last: `agent::deliver`'s group commit).
    pub spool_syncs: u64,
    /// Times the sink acknowledged what it had been sent: one a frame over HTTP, one a
    /// window of PUBACKs over MQTT, one fsync (or flush) of the file sink per group.
    pub sink_flushes: u64,
    /// Writes to the spool that failed (disk full, I/O error).
    pub spool_write_errors: u64,
    /// Times reading stopped because the spool was full under `on_full = "block"`.
    pub spool_full_waits: u64,
    /// Times reading stopped because the disk under `data_dir` was full (or refused a spool
    /// write), until there was room again.
    pub disk_full_waits: u64,
    /// Frames found missing from the spool at start-up (damaged, cut off or deleted while
    /// stopped); their lines cannot be known.
    pub spool_lost_frames: u64,
    /// Bytes of files skipped because their position was lost with the checkpoint
    /// (`start_at = "tail"`): an upper bound.
    pub positions_lost_bytes: u64,
}
