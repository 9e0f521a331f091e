//! Chain verification: walks a log and names the first bad record.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::canon::{self, Member};
use crate::chain::{self, ChainHash, ChainHead, KeyRing};
use crate::checkpoint::VerifiedCheckpoint;
use crate::error::{Error, Result};
use crate::record::{FORMAT_VERSION, MAX_RECORD_BYTES};

/// What to verify against.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// Keys for keyed records, looked up by `keyId`. Whenever it holds a key, unkeyed
    /// records are refused ([`FailureKind::Unkeyed`]) unless
    /// [`allow_unkeyed`](VerifyOptions::allow_unkeyed) is set: otherwise whoever can
    /// write the log could replace a keyed chain by an unkeyed one they computed
    /// themselves.
    pub keys: KeyRing,
    /// Accept unkeyed records even though [`keys`](VerifyOptions::keys) holds keys
    /// (default `false`; without keys unkeyed records are always accepted).
    pub allow_unkeyed: bool,
    /// A checkpoint (already signature-checked) the log must still contain.
    pub checkpoint: Option<VerifiedCheckpoint>,
    /// Threads for the per-line work (canonical scan and hash); 0 (default) uses the
    /// available cores, at most 8. The chain walk itself is sequential.
    pub threads: usize,
    /// Lines longer than this (bytes, without the newline) are reported as bad records
    /// without being held in memory. Default [`MAX_RECORD_BYTES`], the longest line a
    /// writer of this crate produces; the verifier's memory stays within about twice
    /// this, whatever the log holds.
    pub max_line_bytes: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            keys: KeyRing::default(),
            allow_unkeyed: false,
            checkpoint: None,
            threads: 0,
            max_line_bytes: MAX_RECORD_BYTES,
        }
    }
}

impl VerifyOptions {
    /// Unkeyed verification, no checkpoint.
    pub fn new() -> Self {
        VerifyOptions::default()
    }

    /// Verifies keyed records with these keys; unkeyed records are then refused unless
    /// [`allow_unkeyed`](VerifyOptions::allow_unkeyed) is called (before or after).
    pub fn keys(mut self, keys: KeyRing) -> Self {
        self.keys = keys;
        self
    }

    /// Accepts unkeyed records even though keys are given.
    pub fn allow_unkeyed(mut self) -> Self {
        self.allow_unkeyed = true;
        self
    }

    /// Whether unkeyed records are refused: keys are given and unkeyed records were not
    /// explicitly allowed.
    fn refuses_unkeyed(&self) -> bool {
        !self.keys.is_empty() && !self.allow_unkeyed
    }

    /// Sets the number of threads (1 = single-threaded; 0 = available cores).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    fn thread_count(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(8),
            n => n,
        }
    }

    /// Sets [`max_line_bytes`](VerifyOptions::max_line_bytes).
    pub fn max_line_bytes(mut self, n: usize) -> Self {
        self.max_line_bytes = n;
        self
    }

    /// Also checks that the log still holds this checkpoint's record.
    pub fn checkpoint(mut self, checkpoint: VerifiedCheckpoint) -> Self {
        self.checkpoint = Some(checkpoint);
        self
    }
}

/// Where a record is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase", tag = "type")]
#[non_exhaustive]
pub enum Location {
    /// A line of a file.
    File {
        /// The file (for rotated sets, the file of the set that holds the line).
        path: PathBuf,
        /// Byte offset of the line's first byte in that file.
        offset: u64,
        /// 1-based line number in that file.
        line: u64,
    },
    /// A row of a database table, in `seq` order.
    Row {
        /// The table.
        table: String,
        /// 0-based position of the row when read in `seq` order.
        index: u64,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File { path, offset, line } => {
                write!(f, "{} line {line} (byte offset {offset})", path.display())
            }
            Location::Row { table, index } => write!(f, "table {table} row {index}"),
        }
    }
}

/// The kind of the first integrity failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureKind {
    /// The record's bytes were changed (its hash does not match, the line is not
    /// canonical JSON, or a sealed record does not link to its predecessor).
    Modified,
    /// One or more records are missing (a gap in `seq`).
    Deleted,
    /// Records are out of order (the missing `seq` appears later).
    Reordered,
    /// An extra line or record sits in the chain (a duplicate, a replayed record,
    /// or a line the chain links around).
    Inserted,
    /// The log ends before the checkpoint's record: its tail was cut off.
    TruncatedTail,
    /// The record at the checkpoint's `seq` has a different hash: history was
    /// rewritten after the checkpoint was taken.
    CheckpointMismatch,
    /// The log's final line (in its last file) has no newline: an interrupted write (a
    /// writer recovers it into a `.torn` file on open) or a cut.
    TornTail,
    /// The key supplied is not the key the records were sealed with.
    BadKey,
    /// A record is keyed with a key id the verifier was not given.
    MissingKey,
    /// An unkeyed record in a log verified with keys.
    Unkeyed,
}

impl FailureKind {
    /// The snake_case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            FailureKind::Modified => "modified",
            FailureKind::Deleted => "deleted",
            FailureKind::Reordered => "reordered",
            FailureKind::Inserted => "inserted",
            FailureKind::TruncatedTail => "truncated_tail",
            FailureKind::CheckpointMismatch => "checkpoint_mismatch",
            FailureKind::TornTail => "torn_tail",
            FailureKind::BadKey => "bad_key",
            FailureKind::MissingKey => "missing_key",
            FailureKind::Unkeyed => "unkeyed",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first integrity failure found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Failure {
    /// What is wrong.
    pub kind: FailureKind,
    /// The first bad `seq`: for `deleted`, the first missing one; for `reordered`, the
    /// one expected at this place; for `truncated_tail`, the first cut-off one; else the
    /// seq of the bad record (or the one expected there when the line is unreadable).
    pub seq: u64,
    /// The `seq` actually found at the location, when it differs or is known.
    pub found_seq: Option<u64>,
    /// Where.
    pub location: Location,
    /// A human-readable explanation.
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at seq {}", self.kind, self.seq)?;
        if let Some(found) = self.found_seq
            && found != self.seq
        {
            write!(f, " (found seq {found})")?;
        }
        write!(f, ", {}: {}", self.location, self.detail)
    }
}

/// The result of a verification.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Report {
    /// Records verified before the first failure (all of them when intact).
    pub records: u64,
    /// The last verified record.
    pub head: ChainHead,
    /// Bytes read.
    pub bytes: u64,
    /// Files walked, in chain order (empty for a table).
    pub files: Vec<PathBuf>,
    /// The checkpoint checked, if any: its seq.
    pub checkpoint_seq: Option<u64>,
    /// The first failure; `None` when the log is intact.
    pub failure: Option<Failure>,
}

impl Report {
    /// Whether no failure was found.
    pub fn is_intact(&self) -> bool {
        self.failure.is_none()
    }
}

// ---------------------------------------------------------------------------------------
// Line analysis
// ---------------------------------------------------------------------------------------

/// The self-check of one record line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    Ok,
    Mismatch,
    MissingKey,
    Unkeyed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Info {
    seq: u64,
    prev: ChainHash,
    hash: ChainHash,
    key_id: Option<String>,
    key_check: Option<String>,
    check: Check,
}

/// Parses and checks one line: canonical form, required chain fields, hash.
fn analyze(line: &[u8], opts: &VerifyOptions, members: &mut Vec<Member>) -> Result<Info, String> {
    if line.len() > opts.max_line_bytes {
        return Err(too_long(line.len() as u64, opts.max_line_bytes));
    }
    analyze_inner(line, opts, members)
}

fn too_long(len: u64, max: usize) -> String {
    format!("the line is {len} bytes, longer than the limit of {max} bytes")
}

fn analyze_inner(
    line: &[u8],
    opts: &VerifyOptions,
    members: &mut Vec<Member>,
) -> Result<Info, String> {
    canon::scan_object(line, members).map_err(not_canonical)?;
    let fields = read_fields(line, members)?;
    let check = check_fields(&fields, line, opts);
    Ok(fields.into_info(check))
}

/// The MAC check of a scanned line: its record hash (unkeyed) or HMAC (keyed).
fn check_fields(fields: &Fields, line: &[u8], opts: &VerifyOptions) -> Check {
    match fields.key_id.as_deref() {
        None if opts.refuses_unkeyed() => Check::Unkeyed,
        None => match_check(chain::verify_parts(None, &fields.parts(line), &fields.hash)),
        Some(id) => match opts.keys.get(id) {
            None => Check::MissingKey,
            Some(key) => match_check(chain::verify_parts(
                Some(key),
                &fields.parts(line),
                &fields.hash,
            )),
        },
    }
}

fn not_canonical(e: canon::ScanError) -> String {
    format!("not canonical JSON: {e}")
}

fn match_check(ok: bool) -> Check {
    if ok { Check::Ok } else { Check::Mismatch }
}

/// The chain fields of a scanned line, and where its hashed bytes are.
struct Fields {
    seq: u64,
    prev: ChainHash,
    hash: ChainHash,
    key_id: Option<String>,
    key_check: Option<String>,
    /// The "hash" member and one adjacent comma: the hashed bytes are the line without
    /// `cut`.
    cut: (usize, usize),
}

impl Fields {
    fn parts<'l>(&self, line: &'l [u8]) -> [&'l [u8]; 2] {
        let (a, b) = self.cut;
        [
            line.get(..a).unwrap_or_default(),
            line.get(b..).unwrap_or_default(),
        ]
    }

    fn into_info(self, check: Check) -> Info {
        Info {
            seq: self.seq,
            prev: self.prev,
            hash: self.hash,
            key_id: self.key_id,
            key_check: self.key_check,
            check,
        }
    }
}

/// Reads the chain fields of a line [`canon::scan_object`] accepted (with its members).
fn read_fields(line: &[u8], members: &[Member]) -> Result<Fields, String> {
    let mut seq = None;
    let mut prev = None;
    let mut hash = None;
    let mut hash_idx = None;
    let mut key_id = None;
    let mut key_check = None;
    let mut version = None;
    // A hash value is exactly `"` + 64 lowercase hex digits + `"` (no escape can occur
    // in it, and one would fail the hex decoding anyway).
    let hex_value = |raw: &[u8]| {
        raw.strip_prefix(b"\"")
            .and_then(|r| r.strip_suffix(b"\""))
            .and_then(ChainHash::from_hex_bytes)
    };
    // A number member as u64 (digits only: the scan proved it a canonical number).
    let int_value = |raw: &[u8]| {
        raw.iter().try_fold(0u64, |n, &d| {
            d.is_ascii_digit()
                .then_some(())
                .and_then(|()| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
        })
    };
    for (i, m) in members.iter().enumerate() {
        let raw = line.get(m.value.clone()).unwrap_or_default();
        // The scan recognised the member names this crate writes (`Member::known`); a
        // chain member's name cannot be spelt otherwise in the canonical form (no letter
        // can be escaped), so every chain member is recognised.
        match m.known {
            Some(canon::SEQ_KEY) => seq = int_value(raw),
            Some(canon::PREV_HASH_KEY) => prev = hex_value(raw),
            Some(canon::HASH_KEY) => {
                hash = hex_value(raw);
                hash_idx = Some(i);
            }
            Some(canon::KEY_ID_KEY) => {
                key_id = canon::string_value(line, &m.value).map(|s| s.into_owned());
            }
            Some(canon::KEY_CHECK_KEY) => {
                key_check = canon::string_value(line, &m.value).map(|s| s.into_owned());
            }
            Some(canon::V_KEY) => version = int_value(raw),
            _ => {}
        }
    }
    let seq = seq
        .filter(|s| *s >= 1)
        .ok_or("missing or invalid \"seq\"")?;
    let prev = prev.ok_or("missing or invalid \"prevHash\"")?;
    let hash = hash.ok_or("missing or invalid \"hash\"")?;
    match version {
        Some(FORMAT_VERSION) => {}
        Some(v) => return Err(format!("unsupported format version {v}")),
        None => return Err("missing \"v\"".into()),
    }
    let idx = hash_idx.unwrap_or(0);
    // The hashed bytes are the line without its "hash" member (and one adjacent comma):
    // exactly the canonical JSON of the record without "hash".
    let this = members.get(idx).ok_or("missing \"hash\"")?;
    let cut = if idx > 0 {
        (this.start - 1, this.value.end)
    } else if let Some(next) = members.get(1) {
        (this.start, next.start)
    } else {
        (this.start, this.value.end)
    };
    Ok(Fields {
        seq,
        prev,
        hash,
        key_id,
        key_check,
        cut,
    })
}

/// [`analyze`] of every line of `lines` (spans into `buf`), in order, with the SHA-256
/// of each unkeyed record computed while the next line is scanned: one block of the
/// hash per member of the scan (see [`canon::LineScan`]). The results are exactly
/// those of [`analyze`] line by line (a property test checks it).
fn analyze_pipelined(
    buf: &[u8],
    lines: &[(usize, usize)],
    opts: &VerifyOptions,
) -> Vec<Result<Info, String>> {
    let mut out = Vec::with_capacity(lines.len());
    let mut members = Vec::with_capacity(32);
    // The previous line, when its check is its unkeyed hash: its fields and the hash in
    // progress.
    let mut behind: Option<(Fields, chain::SteppedSha256<'_>)> = None;
    for &(s, e) in lines {
        let line = buf.get(s..e).unwrap_or_default();
        let scanned = if line.len() > opts.max_line_bytes {
            Err(too_long(line.len() as u64, opts.max_line_bytes))
        } else {
            scan_behind(line, &mut members, behind.as_mut().map(|b| &mut b.1))
                .map_err(not_canonical)
        };
        if let Some((fields, hasher)) = behind.take() {
            let ok = hasher.finish() == fields.hash.0;
            out.push(Ok(fields.into_info(match_check(ok))));
        }
        match scanned.and_then(|()| read_fields(line, &members)) {
            Ok(fields) if fields.key_id.is_none() && !opts.refuses_unkeyed() => {
                let [a, b] = fields.parts(line);
                behind = Some((fields, chain::SteppedSha256::new(a, b)));
            }
            // Keyed, or unkeyed and refused: checked at once.
            Ok(fields) => {
                let check = check_fields(&fields, line, opts);
                out.push(Ok(fields.into_info(check)));
            }
            Err(why) => out.push(Err(why)),
        }
    }
    if let Some((fields, hasher)) = behind {
        let ok = hasher.finish() == fields.hash.0;
        out.push(Ok(fields.into_info(match_check(ok))));
    }
    out
}

/// [`canon::scan_object`] of `line`, advancing `hasher` (if any) by one block per
/// scanned member. The hasher may be left unfinished.
#[inline]
fn scan_behind(
    line: &[u8],
    members: &mut Vec<Member>,
    mut hasher: Option<&mut chain::SteppedSha256<'_>>,
) -> Result<(), canon::ScanError> {
    let mut scan = canon::LineScan::new(line, members)?;
    loop {
        if let Some(h) = hasher.as_deref_mut()
            && h.step()
        {
            hasher = None;
        }
        if scan.step(members)? {
            return Ok(());
        }
    }
}

/// The head a stored line forms (structure only; the hash is not checked).
pub(crate) fn read_head(line: &[u8]) -> Result<ChainHead, String> {
    let i = analyze(line, &VerifyOptions::default(), &mut Vec::new())?;
    Ok(ChainHead {
        seq: i.seq,
        hash: i.hash,
    })
}

// ---------------------------------------------------------------------------------------
// Engine
// ---------------------------------------------------------------------------------------

/// Internal location: file index or table row.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) enum Loc {
    File { file: usize, offset: u64, line: u64 },
    Row { index: u64 },
}

/// How a line ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LineEnd {
    /// With a newline.
    Newline,
    /// At the end of the whole log, without a newline: a torn tail.
    EndOfLog,
    /// At the end of a rotated file that later files follow, without a newline: no
    /// writer recovers that, so it is a bad line inside the chain.
    EndOfFileMidSet,
}

#[derive(Clone, Copy, Debug)]
struct Prev {
    seq: u64,
    hash: ChainHash,
    prev: ChainHash,
    loc: Loc,
}

/// A line under investigation after the first anomaly, plus what the rest of the log
/// tells about it.
struct Pending {
    loc: Loc,
    info: Result<Info, String>,
    expected: u64,
    prev: Option<Prev>,
    prevprev: Option<Prev>,
    /// Summaries of the next lines (up to 2).
    next: Vec<Option<Info>>,
    /// A later valid record has `seq == expected`.
    seen_expected: bool,
    /// A later valid record has the same `seq` as the bad one.
    seen_found_again: bool,
    /// A later record sealed with the same key id verifies.
    later_key_ok: bool,
}

pub(crate) struct Engine<'o> {
    opts: &'o VerifyOptions,
    expected: u64,
    prev: Option<Prev>,
    prevprev: Option<Prev>,
    records: u64,
    bytes: u64,
    verified_keys: HashSet<String>,
    pending: Option<Pending>,
    failure: Option<(FailureKind, u64, Option<u64>, Loc, String)>,
    /// Scratch space for [`Engine::push`].
    members: Vec<Member>,
}

impl<'o> Engine<'o> {
    pub(crate) fn new(opts: &'o VerifyOptions) -> Self {
        Engine {
            opts,
            expected: 1,
            prev: None,
            prevprev: None,
            records: 0,
            bytes: 0,
            verified_keys: HashSet::new(),
            pending: None,
            failure: None,
            members: Vec::with_capacity(32),
        }
    }

    fn prev_hash(&self) -> ChainHash {
        self.prev.map(|p| p.hash).unwrap_or(ChainHash::ZERO)
    }

    /// Whether the engine still needs more lines.
    pub(crate) fn wants_more(&self) -> bool {
        self.failure.is_none()
    }

    /// Feeds one line (without its newline).
    pub(crate) fn push(&mut self, line: &[u8], end: LineEnd, loc: Loc) {
        if self.failure.is_some() {
            self.bytes += line.len() as u64 + u64::from(end == LineEnd::Newline);
            return;
        }
        let mut members = std::mem::take(&mut self.members);
        let info = analyze(line, self.opts, &mut members);
        self.members = members;
        self.push_info(info, line.len() as u64, end, loc);
    }

    /// Feeds the analysis of one line of `len` bytes (computed by [`analyze`], possibly
    /// on another thread).
    #[inline]
    fn push_info(&mut self, info: Result<Info, String>, len: u64, end: LineEnd, loc: Loc) {
        // The common case, kept small enough to inline: a good record that continues
        // the chain (no failure or anomaly so far, not the checkpoint's record).
        if let Ok(i) = &info
            && i.check == Check::Ok
            && end == LineEnd::Newline
            && self.failure.is_none()
            && self.pending.is_none()
            && i.seq == self.expected
            && i.prev == self.prev_hash()
            && self
                .opts
                .checkpoint
                .as_ref()
                .is_none_or(|cp| cp.seq() != i.seq)
        {
            self.bytes += len + 1;
            if let Some(k) = &i.key_id
                && !self.verified_keys.contains(k)
            {
                self.verified_keys.insert(k.clone());
            }
            self.prevprev = self.prev;
            self.prev = Some(Prev {
                seq: i.seq,
                hash: i.hash,
                prev: i.prev,
                loc,
            });
            self.expected = i.seq + 1;
            self.records += 1;
            return;
        }
        self.push_info_slow(info, len, end, loc);
    }

    #[cold]
    #[inline(never)]
    fn push_info_slow(&mut self, info: Result<Info, String>, len: u64, end: LineEnd, loc: Loc) {
        self.bytes += len + u64::from(end == LineEnd::Newline);
        if self.failure.is_some() {
            return;
        }
        let info = match (end, info) {
            (LineEnd::EndOfFileMidSet, info) => Err(format!(
                "the file ends without a newline although later files of the set follow \
                 (not a torn tail a writer recovers){}",
                match info {
                    Ok(_) => String::new(),
                    Err(why) => format!("; {why}"),
                }
            )),
            (_, info) => info,
        };
        if let Some(p) = self.pending.as_mut() {
            let ok = info.as_ref().ok().filter(|i| i.check == Check::Ok);
            if let Some(i) = ok {
                if i.seq == p.expected {
                    p.seen_expected = true;
                }
                if let Ok(bad) = &p.info {
                    if i.seq == bad.seq {
                        p.seen_found_again = true;
                    }
                    if bad.key_id.is_some() && i.key_id == bad.key_id {
                        p.later_key_ok = true;
                    }
                }
            }
            if p.next.len() < 2 {
                p.next.push(info.ok());
            }
            return;
        }
        if end == LineEnd::EndOfLog {
            self.failure = Some((
                FailureKind::TornTail,
                self.expected,
                info.as_ref().ok().map(|i| i.seq),
                loc,
                "the last line has no newline: an interrupted write (opening the log for \
                 writing moves it to a .torn file) or a cut"
                    .into(),
            ));
            return;
        }
        if let Ok(i) = &info
            && i.check == Check::Ok
            && i.seq == self.expected
            && i.prev == self.prev_hash()
        {
            if let Some(cp) = &self.opts.checkpoint
                && cp.seq() == i.seq
                && cp.hash() != i.hash
            {
                self.failure = Some((
                    FailureKind::CheckpointMismatch,
                    i.seq,
                    Some(i.seq),
                    loc,
                    format!(
                        "checkpoint says seq {} has hash {}, the log has {}: the chain \
                                 was rewritten after the checkpoint",
                        cp.seq(),
                        cp.hash(),
                        i.hash
                    ),
                ));
                return;
            }
            if let Some(k) = &i.key_id
                && !self.verified_keys.contains(k)
            {
                self.verified_keys.insert(k.clone());
            }
            self.prevprev = self.prev;
            self.prev = Some(Prev {
                seq: i.seq,
                hash: i.hash,
                prev: i.prev,
                loc,
            });
            self.expected = i.seq + 1;
            self.records += 1;
            return;
        }
        self.pending = Some(Pending {
            loc,
            info,
            expected: self.expected,
            prev: self.prev,
            prevprev: self.prevprev,
            next: Vec::new(),
            seen_expected: false,
            seen_found_again: false,
            later_key_ok: false,
        });
    }

    /// Classifies the pending anomaly, if any.
    fn classify(&mut self) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let prev_hash = p.prev.map(|x| x.hash).unwrap_or(ChainHash::ZERO);
        let next = p.next.first().cloned().flatten();
        // The next record links around this line: the line is an extra one.
        let linked_around = next
            .as_ref()
            .is_some_and(|n| n.check == Check::Ok && n.seq == p.expected && n.prev == prev_hash);
        let fail = |kind, seq, found, loc, detail: String| Some((kind, seq, found, loc, detail));
        self.failure = match &p.info {
            Err(why) => {
                if linked_around {
                    fail(
                        FailureKind::Inserted,
                        p.expected,
                        None,
                        p.loc,
                        format!("an extra line the chain links around ({why})"),
                    )
                } else {
                    fail(
                        FailureKind::Modified,
                        p.expected,
                        None,
                        p.loc,
                        format!("unreadable record: {why}"),
                    )
                }
            }
            Ok(i) => match i.check {
                Check::Unkeyed => fail(
                    FailureKind::Unkeyed,
                    i.seq,
                    Some(i.seq),
                    p.loc,
                    "record is not keyed but the log is verified with keys (an unkeyed chain \
                     can be recomputed by anyone who can write the log)"
                        .into(),
                ),
                Check::Mismatch | Check::MissingKey if linked_around => fail(
                    FailureKind::Inserted,
                    i.seq,
                    Some(i.seq),
                    p.loc,
                    "an extra record the chain links around".into(),
                ),
                Check::MissingKey => fail(
                    FailureKind::MissingKey,
                    i.seq,
                    Some(i.seq),
                    p.loc,
                    format!(
                        "record is sealed with key id {:?}, which was not supplied",
                        i.key_id.as_deref().unwrap_or_default()
                    ),
                ),
                Check::Mismatch => {
                    let key = i.key_id.as_deref().and_then(|id| self.opts.keys.get(id));
                    let bad_key = match (key, i.key_id.as_deref()) {
                        (Some(k), Some(id)) => {
                            !self.verified_keys.contains(id)
                                && !p.later_key_ok
                                && i.key_check.as_deref() != Some(k.key_check().as_str())
                        }
                        _ => false,
                    };
                    if bad_key {
                        fail(
                            FailureKind::BadKey,
                            i.seq,
                            Some(i.seq),
                            p.loc,
                            format!(
                                "no record sealed with key id {:?} verifies with the key supplied \
                                 and its key check differs: wrong key",
                                i.key_id.as_deref().unwrap_or_default()
                            ),
                        )
                    } else {
                        fail(
                            FailureKind::Modified,
                            i.seq,
                            Some(i.seq),
                            p.loc,
                            "hash does not match the record's content".into(),
                        )
                    }
                }
                Check::Ok => self.classify_sealed(&p, i, prev_hash, next.as_ref(), linked_around),
            },
        };
    }

    /// A validly sealed record in the wrong place.
    fn classify_sealed(
        &self,
        p: &Pending,
        i: &Info,
        prev_hash: ChainHash,
        next: Option<&Info>,
        linked_around: bool,
    ) -> Option<(FailureKind, u64, Option<u64>, Loc, String)> {
        let e = p.expected;
        if i.seq == e {
            // Right seq, wrong link.
            let _ = prev_hash;
            return Some(if linked_around {
                (
                    FailureKind::Inserted,
                    i.seq,
                    Some(i.seq),
                    p.loc,
                    "a record with a duplicate seq that the chain links around".into(),
                )
            } else {
                (
                    FailureKind::Modified,
                    i.seq,
                    Some(i.seq),
                    p.loc,
                    "record is sealed but does not link to its predecessor: the chain was \
                     rewritten from here"
                        .into(),
                )
            });
        }
        if i.seq > e {
            return Some(if p.seen_found_again {
                (
                    FailureKind::Inserted,
                    i.seq,
                    Some(i.seq),
                    p.loc,
                    format!(
                        "a copy of record {} inserted ahead of its place (expected seq {e})",
                        i.seq
                    ),
                )
            } else if p.seen_expected {
                (
                    FailureKind::Reordered,
                    e,
                    Some(i.seq),
                    p.loc,
                    format!(
                        "expected seq {e} here, found {}; seq {e} appears later",
                        i.seq
                    ),
                )
            } else {
                let missing = if i.seq - e == 1 {
                    format!("seq {e} is missing")
                } else {
                    format!("seqs {e}..={} are missing", i.seq - 1)
                };
                (FailureKind::Deleted, e, Some(i.seq), p.loc, missing)
            });
        }
        // i.seq < e: a seq already seen. If it competes with the previous record (same
        // seq, same predecessor), the record the successor links to is the genuine one.
        if let (Some(pr), Some(pp)) = (
            p.prev,
            p.prevprev.or(Some(Prev {
                seq: 0,
                hash: ChainHash::ZERO,
                prev: ChainHash::ZERO,
                loc: p.loc,
            })),
        ) && i.seq == pr.seq
            && i.hash != pr.hash
            && i.prev == pp.hash
            && i.prev == pr.prev
            && let Some(n) = next
            && n.prev == i.hash
            && n.seq == e
        {
            return Some((
                FailureKind::Inserted,
                pr.seq,
                Some(pr.seq),
                pr.loc,
                format!(
                    "two records claim seq {}; the chain continues from the later \
                                 one, so this one is the insertion",
                    pr.seq
                ),
            ));
        }
        Some((
            FailureKind::Inserted,
            i.seq,
            Some(i.seq),
            p.loc,
            format!(
                "seq {} appears again where seq {e} was expected (duplicate or replay)",
                i.seq
            ),
        ))
    }

    /// Ends the walk. `end` is the location just past the last byte.
    pub(crate) fn finish(
        mut self,
        end: Loc,
        resolve: impl Fn(Loc) -> Location,
        files: Vec<PathBuf>,
    ) -> Report {
        self.classify();
        let head = self
            .prev
            .map(|p| ChainHead {
                seq: p.seq,
                hash: p.hash,
            })
            .unwrap_or_default();
        if self.failure.is_none()
            && let Some(cp) = &self.opts.checkpoint
            && cp.seq() > head.seq
        {
            self.failure = Some((
                FailureKind::TruncatedTail,
                head.seq + 1,
                None,
                end,
                format!(
                    "the log ends at seq {} but the checkpoint covers seq {}: records {}..={} \
                             were cut off",
                    head.seq,
                    cp.seq(),
                    head.seq + 1,
                    cp.seq()
                ),
            ));
        }
        let failure = self
            .failure
            .map(|(kind, seq, found_seq, loc, detail)| Failure {
                kind,
                seq,
                found_seq,
                location: resolve(loc),
                detail,
            });
        Report {
            records: self.records,
            head,
            bytes: self.bytes,
            files,
            checkpoint_seq: self.opts.checkpoint.as_ref().map(|c| c.seq()),
            failure,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Sources
// ---------------------------------------------------------------------------------------

/// Feeds one file's bytes to the engine.
///
/// Memory stays bounded: a line that outgrows [`VerifyOptions::max_line_bytes`] is not
/// buffered but skipped up to its newline and reported as a bad record.
fn feed_reader(
    engine: &mut Engine<'_>,
    file_idx: usize,
    last_file: bool,
    mut reader: impl Read,
    path: &Path,
) -> Result<u64> {
    let unterminated = if last_file {
        LineEnd::EndOfLog
    } else {
        LineEnd::EndOfFileMidSet
    };
    const CHUNK: usize = 4 << 20;
    let max_line = engine.opts.max_line_bytes;
    let mut buf: Vec<u8> = vec![0; CHUNK];
    let mut filled = 0usize; // bytes in buf[..filled] not yet consumed
    let mut base: u64 = 0; // file offset of buf[0]
    let mut line_no: u64 = 0;
    // An over-long line being skipped: its start offset and the bytes seen so far.
    let mut skipping: Option<(u64, u64)> = None;
    loop {
        if filled == buf.len() {
            // No newline in the whole buffer: one line as long as the buffer.
            if filled > max_line {
                skipping = Some((base, filled as u64));
                base += filled as u64;
                filled = 0;
            } else {
                let grown = (buf.len() * 2).min(max_line.saturating_add(1));
                buf.resize(grown.max(buf.len() + 1), 0);
            }
        }
        let n = reader
            .read(&mut buf[filled..])
            .map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            break;
        }
        if let Some((start, len)) = skipping {
            // `filled` is 0 while skipping: the new bytes are buf[..n].
            let Some(nl) = memchr::memchr(b'\n', &buf[..n]) else {
                skipping = Some((start, len + n as u64));
                base += n as u64;
                continue;
            };
            line_no += 1;
            let len = len + nl as u64;
            let loc = Loc::File {
                file: file_idx,
                offset: start,
                line: line_no,
            };
            engine.push_info(Err(too_long(len, max_line)), len, LineEnd::Newline, loc);
            skipping = None;
            buf.copy_within(nl + 1..n, 0);
            base += nl as u64 + 1;
            filled = n - nl - 1;
        } else {
            filled += n;
        }
        let mut start = 0usize;
        let mut lines: Vec<(usize, usize)> = Vec::new();
        while let Some(nl) = memchr::memchr(b'\n', &buf[start..filled]) {
            lines.push((start, start + nl));
            start += nl + 1;
        }
        // The lines of a chunk are analysed ahead of the chain walk: split over the
        // threads when the chunk is large, and each thread hashes one line while it scans
        // the next (`analyze_pipelined`).
        let batch = engine.wants_more() && lines.len() >= 2;
        let infos = if batch {
            analyze_many(&buf, &lines, engine.opts)
        } else {
            Vec::new()
        };
        let mut infos = infos.into_iter();
        for &(s, e) in &lines {
            line_no += 1;
            let loc = Loc::File {
                file: file_idx,
                offset: base + s as u64,
                line: line_no,
            };
            match infos.next() {
                Some(info) => engine.push_info(info, (e - s) as u64, LineEnd::Newline, loc),
                None => engine.push(&buf[s..e], LineEnd::Newline, loc),
            }
        }
        buf.copy_within(start..filled, 0);
        base += start as u64;
        filled -= start;
    }
    if let Some((start, len)) = skipping {
        line_no += 1;
        let loc = Loc::File {
            file: file_idx,
            offset: start,
            line: line_no,
        };
        engine.push_info(Err(too_long(len, max_line)), len, unterminated, loc);
        return Ok(start + len);
    }
    if filled > 0 {
        line_no += 1;
        engine.push(
            &buf[..filled],
            unterminated,
            Loc::File {
                file: file_idx,
                offset: base,
                line: line_no,
            },
        );
    }
    Ok(base + filled as u64)
}

/// Analyzes many lines, split over the verifier's threads (the per-line work —
/// canonical scan and hash — is independent; only the chain walk is sequential).
fn analyze_many(
    buf: &[u8],
    lines: &[(usize, usize)],
    opts: &VerifyOptions,
) -> Vec<Result<Info, String>> {
    let threads = opts.thread_count().min(lines.len() / 64).max(1);
    let one = |part: &[(usize, usize)]| analyze_pipelined(buf, part, opts);
    if threads <= 1 {
        return one(lines);
    }
    let per = lines.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut parts = lines.chunks(per);
        let first = parts.next().unwrap_or_default();
        let handles: Vec<_> = parts.map(|part| scope.spawn(move || one(part))).collect();
        let mut out = one(first);
        for h in handles {
            match h.join() {
                Ok(v) => out.extend(v),
                // A worker cannot panic (analysis is total); if it somehow did, let the
                // engine analyze the remaining lines itself.
                Err(_) => break,
            }
        }
        out
    })
}

/// Verifies an in-memory log (one JSON Lines "file" named `name`).
pub fn verify_bytes(name: impl Into<PathBuf>, bytes: &[u8], opts: &VerifyOptions) -> Report {
    let name = name.into();
    let mut engine = Engine::new(opts);
    // Reading from a slice cannot fail.
    let len = feed_reader(&mut engine, 0, true, bytes, &name).unwrap_or(bytes.len() as u64);
    let files = vec![name];
    let resolve = file_resolver(&files);
    engine.finish(
        Loc::File {
            file: 0,
            offset: len,
            line: 0,
        },
        resolve,
        files.clone(),
    )
}

fn file_resolver(files: &[PathBuf]) -> impl Fn(Loc) -> Location + '_ {
    move |loc| match loc {
        Loc::File { file, offset, line } => Location::File {
            path: files.get(file).cloned().unwrap_or_default(),
            offset,
            line,
        },
        Loc::Row { index } => Location::Row {
            table: String::new(),
            index,
        },
    }
}

/// Verifies a file log and its rotated predecessors (`<log>.1`, `<log>.2`, …, then
/// `<log>`), in chain order.
///
/// While reading, it holds a shared lock on `<log>.lock` when that file exists, so it
/// sees no half-written append from a [`FileSink`](crate::FileSink) of this crate. A
/// writer using [`LockMode::Held`](crate::LockMode::Held) keeps that lock; after
/// waiting [`READER_LOCK_WAIT`](crate::file::READER_LOCK_WAIT) the verifier reads
/// without it (an append in flight may then show as a torn tail).
///
/// The per-line work (canonical scan and hash) runs on
/// [`VerifyOptions::threads`] threads; the chain walk is sequential.
pub fn verify(path: impl AsRef<Path>, opts: &VerifyOptions) -> Result<Report> {
    let path = path.as_ref();
    let _guard = crate::file::SharedLock::acquire(path)?;
    let files = crate::file::log_files(path)?;
    if files.is_empty() {
        return Err(Error::io(
            "open",
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such audit log"),
        ));
    }
    let mut engine = Engine::new(opts);
    let mut end = Loc::File {
        file: 0,
        offset: 0,
        line: 0,
    };
    for (idx, f) in files.iter().enumerate() {
        let file = std::fs::File::open(f).map_err(|e| Error::io("open", f, e))?;
        let len = feed_reader(&mut engine, idx, idx + 1 == files.len(), file, f)?;
        end = Loc::File {
            file: idx,
            offset: len,
            line: 0,
        };
    }
    let resolve = file_resolver(&files);
    Ok(engine.finish(end, resolve, files.clone()))
}

/// Verifies a sequence of stored lines that are not in a file (database rows, in seq
/// order). Each row is `(seq column, stored line, column mismatch)`: a mismatch says a
/// queryable column disagrees with the stored record.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn verify_rows<I>(table: &str, rows: I, opts: &VerifyOptions) -> Result<Report>
where
    I: IntoIterator<Item = Result<(u64, String, Option<String>)>>,
{
    let mut engine = Engine::new(opts);
    let mut n = 0u64;
    for row in rows {
        let (seq, line, mismatch) = row?;
        if !engine.wants_more() {
            break;
        }
        let loc = Loc::Row { index: n };
        n += 1;
        if let (Some(why), None) = (&mismatch, &engine.pending) {
            engine.bytes += line.len() as u64;
            engine.failure = Some((FailureKind::Modified, seq, Some(seq), loc, why.clone()));
            break;
        }
        engine.push(line.as_bytes(), LineEnd::Newline, loc);
    }
    let table = table.to_owned();
    Ok(engine.finish(
        Loc::Row { index: n },
        move |loc| match loc {
            Loc::Row { index } => Location::Row {
                table: table.clone(),
                index,
            },
            Loc::File { offset, .. } => Location::Row {
                table: table.clone(),
                index: offset,
            },
        },
        Vec::new(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditKey, AuditRecord, Chain, Status};
    use proptest::prelude::*;

    /// A log of `n` records sealed by `chain`, as one buffer and its line spans.
    fn log(chain: &Chain, n: u64) -> Vec<Vec<u8>> {
        let mut head = ChainHead::default();
        (0..n)
            .map(|i| {
                let rec = AuditRecord::new("manifest.edit", Status::Completed)
                    .namespace("kube-system")
                    .parameter("attempt", i)
                    .parameter("note", if i % 3 == 0 { "q\"uote\\d\n" } else { "plain" })
                    .duration_ms(i * 7);
                let sealed = chain.seal(&head, &rec).unwrap();
                head = sealed.head();
                sealed.line().as_bytes().to_vec()
            })
            .collect()
    }

    fn spans(lines: &[Vec<u8>]) -> (Vec<u8>, Vec<(usize, usize)>) {
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        for l in lines {
            let s = buf.len();
            buf.extend_from_slice(l);
            spans.push((s, buf.len()));
            buf.push(b'\n');
        }
        (buf, spans)
    }

    /// The pipelined analysis gives, line for line, what `analyze` gives.
    fn same_as_line_by_line(lines: &[Vec<u8>], opts: &VerifyOptions) {
        let (buf, spans) = spans(lines);
        let mut members = Vec::new();
        let want: Vec<_> = spans
            .iter()
            .map(|&(s, e)| analyze(&buf[s..e], opts, &mut members))
            .collect();
        assert_eq!(analyze_pipelined(&buf, &spans, opts), want);
    }

    fn key() -> AuditKey {
        AuditKey::new("k1", vec![9; 32]).unwrap()
    }

    fn option_sets() -> Vec<VerifyOptions> {
        let ring = || KeyRing::new().with(key());
        vec![
            VerifyOptions::new(),
            VerifyOptions::new().keys(ring()),
            VerifyOptions::new().keys(ring()).allow_unkeyed(),
            VerifyOptions::new().max_line_bytes(300),
        ]
    }

    #[test]
    fn pipelined_analysis_equals_line_by_line_on_mixed_logs() {
        let unkeyed = log(&Chain::unkeyed(), 12);
        let keyed = log(&Chain::keyed(key()), 5);
        let other_key = log(&Chain::keyed(AuditKey::new("k2", vec![3; 32]).unwrap()), 3);
        let mut mixed: Vec<Vec<u8>> = Vec::new();
        mixed.extend(unkeyed.iter().take(4).cloned());
        mixed.push(Vec::new());
        mixed.push(b"{}".to_vec());
        mixed.push(b"not json".to_vec());
        mixed.extend(keyed.iter().cloned());
        mixed.push(unkeyed[5].clone());
        mixed.extend(other_key.iter().cloned());
        let mut flipped = unkeyed[6].clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 1;
        mixed.push(flipped);
        mixed.extend(unkeyed.iter().skip(7).cloned());
        for opts in option_sets() {
            same_as_line_by_line(&unkeyed, &opts);
            same_as_line_by_line(&keyed, &opts);
            same_as_line_by_line(&mixed, &opts);
            same_as_line_by_line(&mixed[..1], &opts);
            same_as_line_by_line(&[], &opts);
        }
        // The unkeyed log verifies through the pipelined path (batches of >= 2 lines).
        let (buf, _) = spans(&unkeyed);
        let report = verify_bytes("x", &buf, &VerifyOptions::new().threads(1));
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.records, 12);
    }

    /// A reader that hands out its bytes in reads of the given sizes, in turn.
    struct Dribble<'a> {
        data: &'a [u8],
        sizes: Vec<usize>,
        i: usize,
    }

    impl Read for Dribble<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let want = self.sizes[self.i % self.sizes.len()].max(1);
            self.i += 1;
            let n = want.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// `feed_reader` over `reader` as the last file of a one-file log named "x".
    fn verify_reader(reader: impl Read, opts: &VerifyOptions) -> Report {
        let mut engine = Engine::new(opts);
        let name = PathBuf::from("x");
        let len = feed_reader(&mut engine, 0, true, reader, &name).unwrap();
        let files = vec![name];
        engine.finish(
            Loc::File {
                file: 0,
                offset: len,
                line: 0,
            },
            file_resolver(&files),
            files.clone(),
        )
    }

    /// The reference: one byte per read and one thread, so that no read completes two
    /// lines and every line goes through `Engine::push` (`analyze`, line by line), as
    /// before lines were batched and pipelined.
    fn verify_line_by_line(bytes: &[u8], opts: &VerifyOptions) -> Report {
        let opts = opts.clone().threads(1);
        let reader = Dribble {
            data: bytes,
            sizes: vec![1],
            i: 0,
        };
        verify_reader(reader, &opts)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Whole logs, edited anywhere (newlines, CR and truncation included), read in
        /// one slice, in reads of random sizes (records split across reads), on one or
        /// two threads: the report — records, bytes, and the first bad record's kind,
        /// seq, offset, line and detail — is the line-by-line verifier's.
        #[test]
        fn batched_verification_equals_line_by_line_at_any_read_size(
            edits in prop::collection::vec(
                (any::<prop::sample::Index>(), any::<u8>(), 0u8..5), 0..4),
            keyed_from in 0u64..200,
            which in 0usize..4,
            threads in 1usize..3,
            sizes in prop::collection::vec(1usize..700, 1..6),
        ) {
            // 150 records (>= 128 lines in a chunk: two threads split it), unkeyed
            // records first, keyed from `keyed_from` on (none when >= 150).
            let unkeyed = log(&Chain::unkeyed(), 150);
            let keyed = log(&Chain::keyed(key()), 150);
            let mut lines: Vec<Vec<u8>> = Vec::new();
            for i in 0..150usize {
                lines.push(if (i as u64) < keyed_from { unkeyed[i].clone() } else { keyed[i].clone() });
            }
            let (mut bytes, _) = spans(&lines);
            for (at, byte, kind) in edits {
                let at = at.index(bytes.len() + 1);
                match kind {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 => bytes.insert(at, [b'\n', b'\r', byte][usize::from(byte % 3)]),
                    2 if at < bytes.len() => { bytes.remove(at); }
                    3 => bytes.truncate(at),
                    _ => {}
                }
            }
            let opts = option_sets()[which].clone().threads(threads);
            let want = verify_line_by_line(&bytes, &opts);
            prop_assert_eq!(&verify_bytes("x", &bytes, &opts), &want);
            let dribbled = verify_reader(Dribble { data: &bytes, sizes, i: 0 }, &opts);
            prop_assert_eq!(&dribbled, &want);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Random single-byte edits, insertions and deletions anywhere in a log: the
        /// pipelined analysis (scan of one line interleaved with the hash of the
        /// previous one) agrees with the line-by-line analysis on every line.
        #[test]
        fn pipelined_analysis_equals_line_by_line(
            edits in prop::collection::vec((0usize..8, any::<usize>(), any::<u8>(), 0u8..3), 0..4),
            keyed in any::<bool>(),
            which in 0usize..4,
        ) {
            let chain = if keyed { Chain::keyed(key()) } else { Chain::unkeyed() };
            let mut lines = log(&chain, 8);
            for (line, at, byte, kind) in edits {
                let l = &mut lines[line];
                let at = at % (l.len() + 1);
                match kind {
                    0 if at < l.len() => l[at] = byte,
                    1 => l.insert(at, byte),
                    _ if at < l.len() => { l.remove(at); }
                    _ => {}
                }
            }
            // A newline byte would split the line: keep the line structure.
            for l in &mut lines {
                for b in l.iter_mut() {
                    if *b == b'\n' {
                        *b = b' ';
                    }
                }
            }
            same_as_line_by_line(&lines, &option_sets()[which]);
        }
    }
}
