//! Domain commands and their rooms. A money domain defines its commands ([`LedgerCommand`]): each
//! runs on the writer thread against the kernel's transaction handle ([`KernelTx`]) and its
//! domain's state on that thread (its [`Room`]), and answers a typed value or the domain's own
//! refusal. The kernel records the answer under the request's idempotency key, in the same
//! transaction, and hands the typed value to the caller once the batch is durable: nothing is
//! parsed back on the way.

use super::refusal::{Failed, LedgerRefusal, Refusal};
use super::KernelTx;
use crate::idempotency::{IdempotencyKey, IdempotencyRecord};
use crate::store::{StoreError, Transaction};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::any::Any;
use tokio::sync::oneshot;

/// A domain's state on the writer thread: what its commands read and change, cached across
/// batches and written with the batch that changed it. The kernel owns the rooms, so a domain's
/// state lives beside the ledger's without the kernel knowing what it is.
pub trait Room: Any + Send {
    /// Writes what the batch numbered `batch` changed, into its transaction, just before it
    /// commits.
    fn write(&mut self, tx: &mut dyn Transaction, batch: u64) -> Result<(), StoreError>;
    /// Every batch up to `batch` is in the store: what no later batch needs may leave the cache.
    fn committed(&mut self, batch: u64);
    /// Forgets everything cached: after a failed batch the view is reloaded from the store.
    fn forget(&mut self);
    /// How many records the room caches: past the kernel's bound, it is forgotten between
    /// batches.
    fn cached(&self) -> usize;
}

/// The room of commands that keep no state of their own.
impl Room for () {
    fn write(&mut self, _: &mut dyn Transaction, _: u64) -> Result<(), StoreError> {
        Ok(())
    }
    fn committed(&mut self, _: u64) {}
    fn forget(&mut self) {}
    fn cached(&self) -> usize {
        0
    }
}

/// One operation of a money domain, applied atomically on the writer thread: it checks everything
/// before it changes anything, so a refusal leaves no trace.
pub trait LedgerCommand: Send + 'static {
    type Room: Room + Default;
    /// What it answers, as returned to the caller and recorded (as JSON) under the request's key.
    type Answer: Serialize + DeserializeOwned + Send + 'static;
    type Refusal: Refusal + From<LedgerRefusal>;
    /// A name for metrics and logs (`game_bet`).
    fn kind(&self) -> &'static str;
    fn apply(
        &self,
        room: &mut Self::Room,
        tx: &mut KernelTx<'_>,
    ) -> Result<Result<Self::Answer, Self::Refusal>, StoreError>;
}

/// A command's answer, once durable.
#[derive(Debug, Clone)]
pub struct Answered<A> {
    pub value: A,
    /// The answer's JSON, as recorded under the key.
    pub body: Bytes,
    /// True when this is the recorded answer of an earlier request with the same key.
    pub replayed: bool,
}

/// What a command's caller gets.
pub type Outcome<C> = Result<Answered<<C as LedgerCommand>::Answer>, Failed<<C as LedgerCommand>::Refusal>>;

/// The rooms of every domain that has submitted a command, found by type.
#[derive(Default)]
pub(super) struct Rooms(Vec<Box<dyn Room>>);

impl Rooms {
    pub fn get<R: Room + Default>(&mut self) -> &mut R {
        let at = match self.0.iter().position(|room| (room.as_ref() as &dyn Any).is::<R>()) {
            Some(at) => at,
            None => {
                self.0.push(Box::new(R::default()));
                self.0.len().saturating_sub(1)
            }
        };
        (self.0[at].as_mut() as &mut dyn Any).downcast_mut().expect("found by its type")
    }

    /// Takes `R`'s room out (a new one if none), for a command to use beside the kernel's handle;
    /// [`Rooms::put`] gives it back. A command that panics loses it: the writer then reloads
    /// every room anyway.
    fn take<R: Room + Default>(&mut self) -> Box<dyn Room> {
        match self.0.iter().position(|room| (room.as_ref() as &dyn Any).is::<R>()) {
            Some(at) => self.0.swap_remove(at),
            None => Box::new(R::default()),
        }
    }

    fn put(&mut self, room: Box<dyn Room>) {
        self.0.push(room);
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Box<dyn Room>> {
        self.0.iter_mut()
    }

    pub fn cached(&self) -> usize {
        self.0.iter().map(|room| room.cached()).sum()
    }
}

/// A command on its way through the writer, with where its answer goes: the typed command behind
/// one interface, so one batch carries every domain's commands.
pub(super) trait Job: Send {
    fn kind(&self) -> &'static str;
    /// Applies the command, keeps its outcome, and returns what to record under its key (status
    /// and JSON body), or `None` for a transient refusal.
    fn apply(&mut self, tx: &mut KernelTx<'_>) -> Result<Option<(u16, String)>, StoreError>;
    /// Answers from an earlier request's record under the same key.
    fn replay(&mut self, record: &IdempotencyRecord, key: &IdempotencyKey);
    /// Fails the command without applying it.
    fn fail(&mut self, failed: Failed<std::convert::Infallible>);
    /// Sends the outcome: the one kept, or `Unavailable` when the batch is not known durable.
    fn send(self: Box<Self>, durable: Result<(), String>);
}

pub(super) struct Typed<C: LedgerCommand> {
    pub command: C,
    pub outcome: Option<Outcome<C>>,
    pub reply: oneshot::Sender<Outcome<C>>,
}

impl<C: LedgerCommand> Job for Typed<C> {
    fn kind(&self) -> &'static str {
        self.command.kind()
    }

    fn apply(&mut self, tx: &mut KernelTx<'_>) -> Result<Option<(u16, String)>, StoreError> {
        // Out of the rooms while the command runs, so that the gates it triggers reach theirs.
        let mut room = tx.rooms.take::<C::Room>();
        let decided =
            self.command.apply((room.as_mut() as &mut dyn Any).downcast_mut().expect("taken by its type"), tx);
        tx.rooms.put(room);
        let decided = decided?;
        let (record, outcome) = match decided {
            Ok(value) => {
                let body = serde_json::to_string(&value).expect("an answer serialises");
                let answered = Answered { value, body: Bytes::from(body.clone()), replayed: false };
                (Some((200, body)), Ok(answered))
            }
            // A transient refusal (a provider in maintenance) is no decision about the request.
            Err(refused) if refused.is_transient() => (None, Err(Failed::Refused(refused))),
            Err(refused) => {
                let body =
                    contracts::ErrorBody { code: refused.code().as_str().to_owned(), message: refused.to_string() };
                let body = serde_json::to_string(&body).expect("an error body serialises");
                (Some((refused.status(), body)), Err(Failed::Refused(refused)))
            }
        };
        self.outcome = Some(outcome);
        Ok(record)
    }

    fn replay(&mut self, record: &IdempotencyRecord, key: &IdempotencyKey) {
        let outcome = if record.request_hash != key.request_hash {
            Err(Failed::KeyReused)
        } else if record.status == 200 {
            match serde_json::from_str(&record.body) {
                Ok(value) => Ok(Answered { value, body: Bytes::from(record.body.clone()), replayed: true }),
                Err(e) => Err(Failed::Internal(format!("the answer recorded under this key does not parse: {e}"))),
            }
        } else {
            match serde_json::from_str::<contracts::ErrorBody>(&record.body) {
                Ok(body) => match contracts::CellCode::parse(&body.code) {
                    Some(code) => Err(Failed::Replayed { code, message: body.message, status: record.status }),
                    None => Err(Failed::Internal(format!(
                        "the refusal recorded under this key has code {}, which this cell no longer answers",
                        body.code
                    ))),
                },
                Err(e) => Err(Failed::Internal(format!("the refusal recorded under this key does not parse: {e}"))),
            }
        };
        self.outcome = Some(outcome);
    }

    fn fail(&mut self, failed: Failed<std::convert::Infallible>) {
        self.outcome = Some(Err(failed.map(|never| match never {})));
    }

    fn send(self: Box<Self>, durable: Result<(), String>) {
        let outcome = match (durable, self.outcome) {
            (Ok(()), Some(outcome)) => outcome,
            // The batch is in the journal but not known durable: the caller retries with its
            // key, and gets the recorded answer if it did reach the disk.
            (Err(why), _) => Err(Failed::Unavailable(why)),
            (Ok(()), None) => Err(Failed::Unavailable("the command was not applied".into())),
        };
        // A caller that gave up waiting is no reason to stop.
        let _ = self.reply.send(outcome);
    }
}
