//! The sink trait and [`AuditLog`], which composes a [`Chain`] with a sink.

use crate::chain::{Chain, ChainHead};
use crate::checkpoint::{Checkpoint, CheckpointSigner};
use crate::error::{Error, Result};
use crate::record::{AuditRecord, SealedRecord};

/// Where sealed records are stored.
///
/// A sink owns the tail of its chain. It seals records against that tail *while
/// holding its own write lock* (the file lock, a database lock), so several writers —
/// threads, processes, hosts — can share one chain without forking it.
pub trait AuditSink {
    /// Seals `records` in order after the current tail and stores them. Either all are
    /// stored or the call fails (for the file sink: a crash mid-batch can leave a prefix
    /// of the batch, which verifies; a torn final line is recovered on the next open).
    fn append_batch(&mut self, chain: &Chain, records: &[AuditRecord])
    -> Result<Vec<SealedRecord>>;

    /// Seals and stores one record.
    fn append(&mut self, chain: &Chain, record: &AuditRecord) -> Result<SealedRecord> {
        self.append_batch(chain, std::slice::from_ref(record))?
            .pop()
            .ok_or_else(|| Error::invalid("record", "sink stored no record"))
    }

    /// The current tail of the chain (as this sink sees it now).
    fn head(&mut self) -> Result<ChainHead>;

    /// Makes every record appended so far durable (or delivered, for remote sinks).
    fn flush(&mut self) -> Result<()>;
}

impl<S: AuditSink + ?Sized> AuditSink for Box<S> {
    fn append_batch(
        &mut self,
        chain: &Chain,
        records: &[AuditRecord],
    ) -> Result<Vec<SealedRecord>> {
        (**self).append_batch(chain, records)
    }
    fn append(&mut self, chain: &Chain, record: &AuditRecord) -> Result<SealedRecord> {
        (**self).append(chain, record)
    }
    fn head(&mut self) -> Result<ChainHead> {
        (**self).head()
    }
    fn flush(&mut self) -> Result<()> {
        (**self).flush()
    }
}

/// An audit log: a chain (unkeyed or keyed) over a sink.
#[derive(Debug)]
pub struct AuditLog<S> {
    chain: Chain,
    sink: S,
}

impl<S: AuditSink> AuditLog<S> {
    /// An unkeyed log over `sink`.
    pub fn new(sink: S) -> Self {
        AuditLog {
            chain: Chain::unkeyed(),
            sink,
        }
    }

    /// A log over `sink` with the given chain rules.
    pub fn with_chain(sink: S, chain: Chain) -> Self {
        AuditLog { chain, sink }
    }

    /// Seals and stores one record; returns it as stored.
    pub fn append(&mut self, record: &AuditRecord) -> Result<SealedRecord> {
        self.sink.append(&self.chain, record)
    }

    /// Seals and stores several records in order.
    pub fn append_batch(&mut self, records: &[AuditRecord]) -> Result<Vec<SealedRecord>> {
        self.sink.append_batch(&self.chain, records)
    }

    /// The current head of the chain.
    pub fn head(&mut self) -> Result<ChainHead> {
        self.sink.head()
    }

    /// Makes everything appended so far durable.
    pub fn flush(&mut self) -> Result<()> {
        self.sink.flush()
    }

    /// Flushes, then signs a checkpoint of the current head.
    pub fn checkpoint(
        &mut self,
        log: Option<String>,
        signer: &dyn CheckpointSigner,
    ) -> Result<Checkpoint> {
        self.sink.flush()?;
        let head = self.sink.head()?;
        Checkpoint::sign(head, log, signer)
    }

    /// The chain rules.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The sink, mutably.
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// Gives the sink back.
    pub fn into_sink(self) -> S {
        self.sink
    }
}
