/**
 * Every bound in Shanghai, in one place. Operator configuration may lower most of them
 * (see src/node/config.ts); nothing may raise them past the values here.
 *
 * @module
 */
import { invariant } from "./invariant.ts";

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** Longest key, in UTF-8 bytes. */
export const KEY_BYTES_MAX = 1 * KiB;
/** Default and ceiling of the configurable value limit. */
export const VALUE_BYTES_DEFAULT = 1 * MiB;
export const VALUE_BYTES_MAX = 16 * MiB;
/** Size of the slabs small request bodies are read into (see value_slab.ts). */
export const VALUE_SLAB_BYTES = 256 * KiB;
/** Bodies longer than this get a buffer of their own rather than a slot in a slab. */
export const VALUE_SLAB_TAKE_BYTES_MAX = 16 * KiB;
/**
 * Size of the slabs peers' frame payloads are read into (see value_slab.ts): a replication batch
 * of 100 entries with 1 KiB values is about 110 KiB, so a slab holds several.
 */
export const FRAME_SLAB_BYTES = 1 * MiB;
/** Frame payloads longer than this get a buffer of their own rather than a slot in a slab. */
export const FRAME_SLAB_TAKE_BYTES_MAX = 256 * KiB;
/** Prefaulted slabs kept ready per kind (`--prefault-slabs`; see prefaulted_slabs.ts). */
export const PREFAULT_SLABS_DEFAULT = 8;
export const PREFAULT_SLABS_MAX = 256;
/** One encoded entry: a value plus its key and metadata. */
export const RECORD_OVERHEAD_BYTES_MAX = 4 * KiB;
export const RECORD_BYTES_MAX = VALUE_BYTES_MAX + RECORD_OVERHEAD_BYTES_MAX;
/** Record frame: length uint32 + CRC32 uint32. */
export const RECORD_HEADER_BYTES = 8;
export const SEGMENT_HEADER_BYTES = 64;
export const SEGMENT_BYTES_DEFAULT = 64 * MiB;
export const SEGMENT_BYTES_MIN = 64 * KiB;
export const SEGMENT_BYTES_MAX = 1 * GiB;
/**
 * The active segment is laid out with zeros (written and fdatasync'ed) this far ahead of its
 * last record, so a batch overwrites allocated blocks and its fdatasync carries no size or
 * extent change for ext4 to journal: a median 1.35x the fdatasyncs per second measured here
 * (docs/BENCHMARKS.md). 0 turns it off.
 */
export const WAL_PREALLOCATE_BYTES_DEFAULT = 1 * MiB;
export const WAL_PREALLOCATE_BYTES_MAX = 64 * MiB;
/**
 * Synced WAL data further than this behind the active segment's end leaves the OS page cache
 * (src/storage/wal/page_cache.ts): the tail cache serves the newest 8 MiB of entries from
 * memory, and these pages serve reads just past it. 0 keeps everything cached.
 */
export const WAL_DROP_BEHIND_BYTES_DEFAULT = 8 * MiB;
export const WAL_DROP_BEHIND_BYTES_MAX = 1 * GiB;
/** The least a drop covers: one call per step instead of one per batch. */
export const WAL_DROP_BEHIND_STEP_BYTES = 1 * MiB;
/**
 * A batch of fewer than WAL_GATHER_BATCH_ENTRIES local writes, with writers answered a moment ago
 * expected back (WalOptions.expectedWriters), waits up to this long for them before its
 * fdatasync, the event loop reading requests meanwhile. At 10 HTTP clients this made one batch of
 * ten out of two alternating halves: 17-21% more PUTs per second (docs/BENCHMARKS.md, session 30).
 * 0 turns it off.
 */
export const WAL_GATHER_MICROS_DEFAULT = 150;
export const WAL_GATHER_MICROS_MAX = 10_000;
/**
 * Idle polling (src/node/idle_poll.ts): how long after its last request or WAL sync a node's
 * idle-priority poller keeps its core from halting (0: off). Off by default since session 39:
 * on that machine the poller made one node slower at 1, 10 and 50 clients in most of eight
 * alternating pairs and doubled its 1-client p99 (docs/BENCHMARKS.md); where a halted core
 * loses its caches (session 32's machine) a window of IDLE_POLL_MICROS_SUGGESTED paid.
 */
export const IDLE_POLL_MICROS_DEFAULT = 0;
/** The window that paid where idle polling helped (session 32): what `--idle-poll-us` suggests. */
export const IDLE_POLL_MICROS_SUGGESTED = 1_000;
export const IDLE_POLL_MICROS_MAX = 100_000;
/** Batches at least this long never wait for expected writers: their fdatasync is shared enough. */
export const WAL_GATHER_BATCH_ENTRIES = 8;

/** Group commit: a batch holds at most this many entries / bytes (both configurable lower). */
export const BATCH_ENTRIES_DEFAULT = 100;
export const BATCH_ENTRIES_MAX = 10_000;
export const BATCH_BYTES_DEFAULT = 4 * MiB;
/**
 * Entries that came from peers may fill a group commit up to this many (local appends still
 * stop a batch at the batch-entries bound): a follower catching up queues thousands at once,
 * and 100 per fdatasync made its disk as much its pace as its CPU (docs/BENCHMARKS.md,
 * session 12).
 */
export const BATCH_ENTRIES_REPLICATED_DEFAULT = 1_000;
/** Writers queued behind the batch in flight; past this, appends are refused (backpressure). */
export const PENDING_ENTRIES_MAX = 100_000;
export const PENDING_BYTES_MAX = 256 * MiB;

/** One in-flight sparse index point per this many bytes of segment. */
export const SPARSE_INDEX_INTERVAL_BYTES = 64 * KiB;
/** Reads of the log return at most this many entries / bytes per call. */
export const READ_ENTRIES_MAX = 10_000;
export const READ_BYTES_MAX = 32 * MiB;
/** A WAL scan reads at most this much on the JavaScript thread before it lets the event loop run. */
export const WAL_READ_SYNC_BYTES = 1 * MiB;
/**
 * Piece in which recovery reads a segment to check it (grown for a record that does not fit):
 * one buffer reused, because first touches of fresh memory cost about 3 ms per MiB on our VMs.
 */
export const WAL_RECOVERY_PIECE_BYTES = 1 * MiB;
/** Largest chunk a WAL scan reads at once. */
export const WAL_READ_CHUNK_BYTES = 256 * KiB;
/** Segments a WAL keeps open for reading (least recently read closed first). */
export const WAL_READ_HANDLES_MAX = 4;
/** Where recent scans stopped, kept so the next scan from there starts at its record. */
export const WAL_READ_HINTS_MAX = 16;

/** Longest HTTP request head (request line and headers) the admin port reads (431 beyond). */
export const HTTP_HEAD_BYTES_MAX = 16 * KiB;
/** Most header fields in one HTTP request (431 beyond). */
export const HTTP_HEADERS_MAX = 100;
/**
 * Largest HTTP request body the admin port reads for any route (413 beyond, before reading).
 * Each route then applies its own, lower limit (the value limit for writes).
 */
export const HTTP_BODY_BYTES_MAX = VALUE_BYTES_MAX + 64 * KiB;
/** Longest chunk-size line of a chunked request body, extensions included. */
export const HTTP_CHUNK_LINE_BYTES_MAX = 1 * KiB;
/**
 * A request, head and body, must arrive whole within this long of its first byte, or the
 * connection closes (a client that sends part and stops would otherwise hold it, and a stop).
 */
export const HTTP_REQUEST_READ_TIMEOUT_MS = 30_000;
export const HTTP_LIST_LIMIT_DEFAULT = 100;
export const HTTP_LIST_LIMIT_MAX = 10_000;
export const HTTP_LOG_LIMIT_DEFAULT = 100;
export const HTTP_LOG_LIMIT_MAX = 10_000;
/**
 * Items a list or log answer encodes as JSON per turn of the event loop (about a millisecond for
 * 1 KiB JSON values). In one go, a list of 10,000 such values held the node 141-346 ms, and every
 * write waited for it.
 */
export const HTTP_JSON_STEP_ITEMS = 100;

/** Snapshot after this many WAL bytes since the last one (configurable). */
export const SNAPSHOT_EVERY_BYTES_DEFAULT = 256 * MiB;
/**
 * A snapshot also waits until the WAL since the last one holds this percentage of that
 * snapshot's size (configurable; 0: SNAPSHOT_EVERY_BYTES_DEFAULT alone decides). A snapshot
 * rewrites the whole data set, so with a fixed trigger the bytes snapshots write grew with the
 * data set: at 1 GiB of 1 KiB values under overwrites, 1.7-2.3 bytes per WAL byte, one under
 * way for 27-32 s of every 30 s. At 100% they write at most about one byte per WAL byte (0.8-0.9
 * there, with 6-42% more writes per second: `deno task bench:snapshots`), whatever the data
 * set's size, as Redis's `auto-aof-rewrite-percentage 100` bounds its rewrites; a restart then
 * replays at most about one snapshot's worth of WAL.
 */
export const SNAPSHOT_WAL_PERCENT_DEFAULT = 100;
export const SNAPSHOT_WAL_PERCENT_MAX = 10_000;
/**
 * A snapshot being written is fdatasync'ed after every this many bytes, so its dirty pages
 * never pile up: one sync of a whole 150 MiB snapshot kept the disk busy for about 300 ms, and
 * every WAL fdatasync queued behind it (writes acknowledged 250 ms late, session 15).
 */
export const SNAPSHOT_SYNC_EVERY_BYTES = 1 * MiB;
/**
 * Records a snapshot copies from the key-value view per turn of the event loop (about 1 ms of
 * work); the view takes writes between turns (Keyspace.beginCapture).
 */
export const SNAPSHOT_CAPTURE_STEP_KEYS = 5_000;
/**
 * Tombstones a collection sweep looks at per turn of the event loop (Store.collectTombstones):
 * about 1-3 ms. In one go, 300,000 tombstones held the loop 22-55 ms for a sweep that removed
 * none (every 10 s while they are in their grace period) and 154-183 ms for the one that
 * removed them all.
 */
export const TOMBSTONE_SWEEP_STEP_KEYS = 4_000;
/**
 * Keys a snapshot install looks at per turn of the event loop for keys its sender deleted
 * (Keyspace.beginDropDeletedBy): about 1-1.5 ms. In one go, 300,000 keys held the loop 23-52 ms
 * and 1,000,000 keys 140-150 ms, once per install.
 */
export const INSTALL_PASS_STEP_KEYS = 10_000;
/** Keep at least this much WAL behind the newest snapshot for replication catch-up. */
export const RETAIN_BYTES_DEFAULT = 256 * MiB;

/** HLC: the logical counter lives in the low bits of one safe integer. */
export const HLC_LOGICAL_BITS = 10;

invariant(
  RECORD_BYTES_MAX <= SEGMENT_BYTES_MAX - SEGMENT_HEADER_BYTES,
  "A record must fit in one segment",
);
invariant(
  BATCH_BYTES_DEFAULT >= RECORD_HEADER_BYTES + VALUE_BYTES_DEFAULT,
  "A batch must admit one full default record",
);
invariant(PENDING_BYTES_MAX >= RECORD_BYTES_MAX, "The pending queue must admit one full record");

// ---- Cluster: node-to-node transport and membership (src/cluster/) ----
/** Frame header on the node port: length uint32 + CRC32 uint32. */
export const FRAME_HEADER_BYTES = 8;
/** Largest node-to-node frame payload; one full record plus its batch metadata must fit. */
export const FRAME_BYTES_MAX = 32 * MiB;
/** Before the handshake completes a peer is unauthenticated: its frames may be this big only. */
export const HANDSHAKE_FRAME_BYTES_MAX = 4 * KiB;
/** A connection that has not finished its handshake within this is closed. */
export const HANDSHAKE_TIMEOUT_MS = 5_000;
/**
 * Each node-port connection reads into one buffer of this size, reused for every read (the
 * frame decoder copies out what it keeps; the rest of a larger frame is read straight into
 * that frame's buffer). Reading through the socket's ReadableStream instead allocated (and
 * zeroed) a fresh 64 KiB chunk per read, whatever arrived.
 */
export const PEER_READ_BUFFER_BYTES = 64 * KiB;
/** Bytes queued to one peer before send() refuses (backpressure). */
export const PEER_SEND_QUEUE_BYTES_MAX = 64 * MiB;
/** Open node-port connections (inbound and outbound, authenticated or not). */
export const PEER_CONNECTIONS_MAX = 256;
/** Members one node tracks (including left ones). */
export const MEMBERS_MAX = 1024;
/** Gossip updates piggybacked on one probe message. */
export const GOSSIP_UPDATES_PER_MESSAGE_MAX = 16;
/** Members asked to probe a silent member on our behalf (SWIM's k). */
export const INDIRECT_PROBES_K = 3;
/** Operator timings of seed 002 (all configurable). */
export const HEARTBEAT_INTERVAL_MS_DEFAULT = 5_000;
export const SUSPECT_AFTER_MS_DEFAULT = 10_000;
export const DOWN_AFTER_MS_DEFAULT = 15_000;

invariant(FRAME_BYTES_MAX >= RECORD_BYTES_MAX + 64 * KiB, "A frame must carry one full record");
invariant(PEER_SEND_QUEUE_BYTES_MAX >= FRAME_BYTES_MAX, "A peer queue must admit one full frame");
/** Readiness (ops): not ready past this replication lag (entries, seed 002's alert threshold). */
export const READY_LAG_MAX_DEFAULT = 10_000;
/** Readiness (ops): not ready below this much free disk on the data directory's file system. */
export const MIN_FREE_DISK_BYTES_DEFAULT = 64 * MiB;
/** How often the node samples free disk space for readiness and metrics. */
export const DISK_SAMPLE_INTERVAL_MS = 5_000;
/** How often the event loop's delay is sampled (src/telemetry/loop_delay.ts). */
export const LOOP_DELAY_SAMPLE_MS = 100;
/** Online backups: concurrent sessions a node serves, and how long an idle one lives. */
export const BACKUP_SESSIONS_MAX = 2;
export const BACKUP_SESSION_IDLE_MS = 60_000;
/** Backup files are streamed in chunks of this size. */
export const BACKUP_CHUNK_BYTES = 1 * MiB;
/** Largest manifest a restore or verify will parse. */
export const BACKUP_MANIFEST_BYTES_MAX = 16 * MiB;

/** Longest origin (src/common/origin.ts): a 64-character node id, `~` and an 8-digit tag. */
export const ORIGIN_BYTES_MAX = 73;

/**
 * Most ranges of entries held above a gap (Keyspace.aheadRanges) a snapshot transfer's last
 * chunk carries; a capture with more sends none, and the follower counts only the vector, as
 * before the field existed.
 */
export const REPL_SNAP_AHEAD_RANGES_MAX = 4_096;
/**
 * Most entries held above a gap that a snapshot transfer may name (each is counted one by one
 * at the install); a sender with more leaves them out. A node holds a few at a time, for as
 * long as a relay runs ahead.
 */
export const AHEAD_ENTRIES_MAX = 1_000_000;

/** Replication (src/replication): credit the follower grants, in entries in flight. */
export const REPL_CREDIT_ENTRIES_DEFAULT = 100;
export const REPL_CREDIT_ENTRIES_MAX = 100_000;
/** A follower whose WAL keeps up grants this many times its base credit (see Shipper). */
export const REPL_CREDIT_BOOST = 30;
/** The newest durable entries kept in memory for leaders (one cache per node, not per peer). */
export const REPL_TAIL_CACHE_BYTES = 8 * MiB;
/** Replication batches: entries per frame and bytes per frame (entries framed as in the WAL). */
export const REPL_BATCH_ENTRIES_DEFAULT = 100;
export const REPL_BATCH_BYTES_DEFAULT = 1 * MiB;
export const REPL_BATCH_BYTES_MAX = 32 * MiB;
/** Bytes a leader may have in flight to one follower: with the credit, this is all it buffers. */
export const REPL_WINDOW_BYTES_DEFAULT = 8 * MiB;
/** Batches in flight to one follower (empty batches that only skip entries count too). */
export const REPL_WINDOW_BATCHES_MAX = 64;
/** A stream with unacknowledged batches and no progress for this long is reopened. */
export const REPL_RESEND_AFTER_MS_DEFAULT = 1_000;
/**
 * A leader holds back relays of an entry whose origin, a live peer, ships it to the follower
 * itself; held back longer than this without the follower reporting it, they are shipped.
 */
export const REPL_RELAY_GRACE_MS_DEFAULT = 500;
/**
 * How long a restarted cluster node holds its first local writes for a peer's version vector,
 * which shows whether the peers hold more of its origin than its data directory does (a
 * directory put back from a copy): writes numbered before that could take numbers the peers
 * hold. Past it, with no peer answering, writes go ahead.
 */
export const ORIGIN_CHECK_WAIT_MS = 1_000;
/**
 * Deletes are tombstones until every member holds them: a sweep every TOMBSTONE_SWEEP_MS_DEFAULT
 * removes those every member reported and whose HLC is older than every member's reported clock
 * by TOMBSTONE_GRACE_MS_DEFAULT (both configurable: --tombstone-sweep-ms, --tombstone-grace-ms).
 */
export const TOMBSTONE_GRACE_MS_DEFAULT = 60_000;
export const TOMBSTONE_GRACE_MS_MAX = 7 * 24 * 3_600_000;
export const TOMBSTONE_SWEEP_MS_DEFAULT = 10_000;
export const TOMBSTONE_SWEEP_MS_MIN = 100;
export const TOMBSTONE_SWEEP_MS_MAX = 3_600_000;
/** Snapshot transfer: keys and value bytes per chunk, chunks in flight. */
export const REPL_SNAPSHOT_CHUNK_KEYS = 1_000;
export const REPL_SNAPSHOT_CHUNK_BYTES = 1 * MiB;
export const REPL_SNAPSHOT_CHUNKS_INFLIGHT_MAX = 4;
/** How long a write waits for `ack=quorum|all`, and a read for `consistency=causal|quorum`. */
export const ACK_TIMEOUT_MS_DEFAULT = 5_000;
export const ACK_TIMEOUT_MS_MAX = 60_000;
/** Waiting writes and reads (ack, causal, quorum) at once; past this, requests get a 503. */
export const WAITERS_MAX = 100_000;
/**
 * Change feed: applied entries one subscriber keeps between its client's pulls (about 1 MiB of
 * 1 KiB values); past this it takes no more and reads what it missed from the WAL.
 */
export const CHANGES_QUEUE_ENTRIES_MAX = 1_000;
/** The same queue's bound in bytes of values, which may be up to --value-bytes-max (1 MiB) each. */
export const CHANGES_QUEUE_BYTES_MAX = 4 * MiB;

invariant(
  REPL_BATCH_BYTES_DEFAULT <= REPL_WINDOW_BYTES_DEFAULT,
  "The window must admit one full batch",
);
