//! Store references: what a task holds in the object stores, and releasing it whichever way
//! the task ends.
//!
//! A worker that puts its output in a store returns a *reference payload* (item flag
//! `REFERENCE`) instead of the bytes. The engine reads only its head, the list of objects:
//!
//! ```text
//! reference := store:u8 | count:u16 | object * count | meta (opaque to the engine)
//! store 1 ARENA   object := 32 bytes: the shm crate's Reference (arena id, offset, size, generation)
//! store 2 REDIS   object := key_len:u16 | key
//! ```
//!
//! The rule: a task owns the objects of its latest output. They are released when the next
//! stage finishes with them (its result arrives), or when the task ends in any other way
//! (error, timeout, client gone, drain). Arena objects are freed here; Redis keys are read and
//! deleted by their consumer, so the engine deletes only the keys of tasks that ended before
//! their consumer ran. An arena object is *adopted* when its producer hands it over, so the
//! producer's death no longer reclaims it.
//!
//! One output may have several readers: an ensemble hands its input to every member, and a
//! switch hands its input to the chooser and then to the branch. The engine holds such
//! objects in one [`Lease`] shared by every reader (a reference count), and frees them when
//! the last reader lets go.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, Bytes};
use shm::{Arena, Reference, ShmError};
use tokio::sync::mpsc;
use tracing::debug;

/// Store kind byte of the arena.
pub const STORE_ARENA: u8 = 1;
/// Store kind byte of Redis.
pub const STORE_REDIS: u8 = 2;

/// One object a task holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreObject {
    /// An object in this server's arena.
    Arena(Reference),
    /// A Redis key.
    Redis(Bytes),
}

impl StoreObject {
    /// Payload bytes the object carries (arena objects); Redis sizes are unknown here.
    pub fn size(&self) -> u64 {
        match self {
            StoreObject::Arena(reference) => reference.size,
            StoreObject::Redis(_) => 0,
        }
    }
}

/// Why a reference payload was refused.
#[derive(Debug, thiserror::Error)]
pub enum RefError {
    /// The head of the payload does not parse.
    #[error("malformed store reference: {0}")]
    Malformed(&'static str),
    /// A store kind this server does not run.
    #[error("store reference names store {0}, which this server does not run")]
    NoSuchStore(u8),
    /// The arena refused the reference (stale, forged, foreign).
    #[error("invalid arena reference: {0}")]
    Arena(#[from] ShmError),
    /// The object already belongs to a task: a worker handed the same reference over twice.
    #[error("invalid arena reference: object at offset {0} already belongs to another request")]
    AlreadyHandedOver(u64),
}

/// Reads the object list at the head of a reference payload.
///
/// # Errors
/// [`RefError::Malformed`] when the head is cut short or names an unknown store.
pub fn parse(payload: &Bytes) -> Result<Vec<StoreObject>, RefError> {
    let mut head = payload.clone();
    if head.remaining() < 3 {
        return Err(RefError::Malformed("shorter than its head"));
    }
    let store = head.get_u8();
    if store != STORE_ARENA && store != STORE_REDIS {
        return Err(RefError::NoSuchStore(store));
    }
    let count = head.get_u16_le();
    let mut objects = Vec::with_capacity(count.into());
    for _ in 0..count {
        let object = match store {
            STORE_ARENA => {
                if head.remaining() < Reference::LEN {
                    return Err(RefError::Malformed("arena reference cut short"));
                }
                let reference = Reference::from_bytes(&head.split_to(Reference::LEN))?;
                StoreObject::Arena(reference)
            }
            STORE_REDIS => {
                if head.remaining() < 2 {
                    return Err(RefError::Malformed("redis key length cut short"));
                }
                let len = usize::from(head.get_u16_le());
                if head.remaining() < len {
                    return Err(RefError::Malformed("redis key cut short"));
                }
                StoreObject::Redis(head.split_to(len))
            }
            other => return Err(RefError::NoSuchStore(other)),
        };
        objects.push(object);
    }
    Ok(objects)
}

/// The stores this server runs, as the engine uses them: adopt and release.
#[derive(Default)]
pub struct Stores {
    /// The arena, when a stage uses it.
    pub arena: Option<Arc<Arena>>,
    /// Keys to delete, consumed by the Redis releaser task.
    pub redis: Option<mpsc::UnboundedSender<Bytes>>,
    /// Arena objects owned by tasks now, with how many tasks own each, so a reference handed
    /// over twice (a worker replaying another request's reference) is refused instead of
    /// shared by two tasks. A block a worker shared on purpose (an array lent to several
    /// tasks, an input passed through: `shm/src/arena/holds.rs`) carries one hold per task in
    /// the arena, and may be adopted that many times.
    adopted: Mutex<HashMap<Reference, u32>>,
}

impl Stores {
    /// Stores with an arena and/or a Redis key releaser.
    pub fn new(arena: Option<Arc<Arena>>, redis: Option<mpsc::UnboundedSender<Bytes>>) -> Self {
        Self { arena, redis, adopted: Mutex::default() }
    }

    fn adopted(&self) -> MutexGuard<'_, HashMap<Reference, u32>> {
        // Every update is one insert or remove: a poisoned set is still consistent.
        self.adopted.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Takes ownership of the objects a worker handed over, all or none.
    ///
    /// When any object is refused, the payload's other objects are released too (the ones
    /// adopted here and the worker's own valid ones), so a refused payload leaves nothing
    /// behind; objects owned by other tasks are never touched.
    ///
    /// # Errors
    /// [`RefError`] when an object names a store we do not run, the arena refuses it, or it
    /// already belongs to a task.
    pub fn adopt(&self, objects: &[StoreObject]) -> Result<(), RefError> {
        let mut taken = Vec::new();
        let mut refused = None;
        for object in objects {
            if let Err(err) = self.adopt_one(object) {
                refused = Some(err);
                break;
            }
            taken.push(object.clone());
        }
        let Some(err) = refused else {
            return Ok(());
        };
        self.release(taken, false);
        if let Some(arena) = &self.arena {
            let adopted = self.adopted();
            for object in objects {
                if let StoreObject::Arena(reference) = object {
                    let owners = adopted.get(reference).copied().unwrap_or(0);
                    let shared =
                        owners > 0 && arena.task_holds(reference).is_ok_and(|holds| holds > owners);
                    if owners == 0 || shared {
                        // The worker's own valid objects, or the hold it shared a task's object
                        // with; a forged one fails validation here.
                        let _ = arena.free(reference);
                    }
                }
            }
        }
        Err(err)
    }

    fn adopt_one(&self, object: &StoreObject) -> Result<(), RefError> {
        match object {
            StoreObject::Arena(reference) => {
                let arena = self.arena.as_ref().ok_or(RefError::NoSuchStore(STORE_ARENA))?;
                let mut adopted = self.adopted();
                let owners = adopted.get(reference).copied().unwrap_or(0);
                if owners > 0 && arena.task_holds(reference)? <= owners {
                    return Err(RefError::AlreadyHandedOver(reference.offset));
                }
                arena.adopt(reference)?;
                *adopted.entry(*reference).or_insert(0) += 1;
                Ok(())
            }
            StoreObject::Redis(_) if self.redis.is_none() => {
                Err(RefError::NoSuchStore(STORE_REDIS))
            }
            StoreObject::Redis(_) => Ok(()),
        }
    }

    /// Releases objects a task no longer needs; `consumed` when a stage has read them.
    pub fn release(&self, objects: Vec<StoreObject>, consumed: bool) {
        for object in objects {
            match object {
                StoreObject::Arena(reference) => {
                    if let Some(arena) = &self.arena {
                        let mut adopted = self.adopted();
                        if let Some(owners) = adopted.get_mut(&reference) {
                            *owners -= 1;
                            if *owners == 0 {
                                adopted.remove(&reference);
                            }
                        }
                        drop(adopted);
                        // Stale means someone already freed it (a reclaimed producer): fine.
                        if let Err(err) = arena.free(&reference) {
                            debug!(error = %err, "arena object already released");
                        }
                    }
                }
                // A consumer that ran has deleted its keys itself (GETDEL).
                StoreObject::Redis(_) if consumed => {}
                StoreObject::Redis(key) => {
                    if let Some(redis) = &self.redis {
                        let _ = redis.send(key);
                    }
                }
            }
        }
    }
}

/// Store objects held for one or more tasks, released when the last holder drops its `Arc`.
///
/// `Drop` is the only release path, so every way a holder ends (answered, removed, deferred
/// to a link and released there, the table dropped at stop) lets go of them exactly once.
pub struct Lease {
    objects: Vec<StoreObject>,
    stores: Arc<Stores>,
    /// Set once a reader ran: it deleted its Redis keys itself, so the release must not.
    consumed: AtomicBool,
}

impl Lease {
    /// A lease on `objects` (adopted already), released into `stores`; `None` when there
    /// are no objects to hold.
    pub fn new(stores: &Arc<Stores>, objects: Vec<StoreObject>) -> Option<Arc<Self>> {
        if objects.is_empty() {
            return None;
        }
        Some(Arc::new(Self { objects, stores: stores.clone(), consumed: AtomicBool::new(false) }))
    }

    /// Notes that a reader of these objects has run (see [`Stores::release`]'s `consumed`).
    pub fn mark_consumed(&self) {
        self.consumed.store(true, Ordering::Release);
    }

    /// The objects held.
    pub fn objects(&self) -> &[StoreObject] {
        &self.objects
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("objects", &self.objects).finish_non_exhaustive()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let objects = std::mem::take(&mut self.objects);
        self.stores.release(objects, self.consumed.load(Ordering::Acquire));
    }
}

/// Deletes Redis keys of abandoned tasks, in batches, until the channel closes.
pub async fn release_redis_keys(url: String, mut keys: mpsc::UnboundedReceiver<Bytes>) {
    let mut connection = None;
    let mut batch = Vec::new();
    while keys.recv_many(&mut batch, 256).await > 0 {
        if connection.is_none() {
            connection = match redis::Client::open(url.as_str()) {
                Ok(client) => client.get_multiplexed_async_connection().await.ok(),
                Err(_) => None,
            };
        }
        let Some(conn) = connection.as_mut() else {
            // The keys expire on their own; the expiry is the backstop for this case.
            tracing::warn!(keys = batch.len(), "redis unreachable; abandoned keys left to expire");
            batch.clear();
            continue;
        };
        let mut command = redis::cmd("DEL");
        for key in batch.drain(..) {
            command.arg(key.as_ref());
        }
        if let Err(err) = command.query_async::<i64>(conn).await {
            tracing::warn!(error = %err, "deleting abandoned redis keys failed");
            connection = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arena_payload(references: &[Reference], meta: &[u8]) -> Bytes {
        let mut payload = vec![STORE_ARENA];
        payload.extend_from_slice(&(references.len() as u16).to_le_bytes());
        for reference in references {
            payload.extend_from_slice(&reference.to_bytes());
        }
        payload.extend_from_slice(meta);
        payload.into()
    }

    #[test]
    fn parses_arena_and_redis_heads() {
        let reference = Reference { arena_id: 7, offset: 4096, size: 12, generation: 3 };
        let objects = parse(&arena_payload(&[reference, reference], b"meta")).unwrap();
        assert_eq!(objects, vec![StoreObject::Arena(reference); 2]);
        let redis = Bytes::from_static(b"\x02\x01\x00\x03\x00abcmeta");
        assert_eq!(parse(&redis).unwrap(), vec![StoreObject::Redis(Bytes::from_static(b"abc"))]);
    }

    #[test]
    fn refuses_malformed_heads() {
        assert!(matches!(parse(&Bytes::from_static(b"\x01")), Err(RefError::Malformed(_))));
        assert!(matches!(
            parse(&Bytes::from_static(b"\x01\x01\x00abc")),
            Err(RefError::Malformed(_))
        ));
        assert!(matches!(
            parse(&Bytes::from_static(b"\x09\x01\x00")),
            Err(RefError::NoSuchStore(9))
        ));
        // No objects does not excuse an unknown store.
        assert!(matches!(
            parse(&Bytes::from_static(b"\x09\x00\x00")),
            Err(RefError::NoSuchStore(9))
        ));
        assert!(matches!(
            parse(&Bytes::from_static(b"\x02\x01\x00\x09\x00ab")),
            Err(RefError::Malformed(_))
        ));
    }

    #[test]
    fn adopt_and_release_keep_the_arena_balanced() {
        let dir = std::env::temp_dir();
        let arena = Arc::new(Arena::create(&dir, 1 << 20).unwrap());
        let mut draft = arena.alloc(100).unwrap();
        draft.as_mut_slice().fill(1);
        let reference = draft.seal().unwrap();
        let stores = Stores::new(Some(arena.clone()), None);
        let objects = vec![StoreObject::Arena(reference)];
        stores.adopt(&objects).unwrap();
        assert_eq!(arena.stats().objects, 1);
        stores.release(objects.clone(), true);
        assert_eq!(arena.stats().objects, 0);
        // A stale reference is refused on adoption and ignored on release.
        assert!(matches!(stores.adopt(&objects), Err(RefError::Arena(_))));
        stores.release(objects, true);
        // A reference handed over twice is refused; one refused object frees the payload.
        let first = StoreObject::Arena(arena.alloc(64).unwrap().seal().unwrap());
        stores.adopt(std::slice::from_ref(&first)).unwrap();
        assert!(matches!(
            stores.adopt(std::slice::from_ref(&first)),
            Err(RefError::AlreadyHandedOver(_))
        ));
        assert_eq!(arena.stats().objects, 1, "the owner's object survives the replay");
        let valid = StoreObject::Arena(arena.alloc(64).unwrap().seal().unwrap());
        let stale = StoreObject::Arena(Reference { generation: 999, ..reference });
        assert!(stores.adopt(&[valid, stale]).is_err());
        assert_eq!(arena.stats().objects, 1, "the refused payload's valid object is freed");
        stores.release(vec![first], true);
        assert_eq!(arena.stats().objects, 0);
        let forged = StoreObject::Redis(Bytes::from_static(b"k"));
        assert!(matches!(stores.adopt(&[forged]), Err(RefError::NoSuchStore(STORE_REDIS))));
    }

    #[test]
    fn a_shared_object_is_adopted_once_per_hand_over() {
        let dir = std::env::temp_dir();
        let arena = Arc::new(Arena::create(&dir, 1 << 20).unwrap());
        let stores = Stores::new(Some(arena.clone()), None);
        // An input passed straight through: shared once, so two tasks may own it.
        let input = StoreObject::Arena(arena.alloc(64).unwrap().seal().unwrap());
        let StoreObject::Arena(reference) = input.clone() else { unreachable!() };
        stores.adopt(std::slice::from_ref(&input)).unwrap();
        arena.share(&reference).unwrap();
        stores.adopt(std::slice::from_ref(&input)).unwrap();
        assert!(
            matches!(
                stores.adopt(std::slice::from_ref(&input)),
                Err(RefError::AlreadyHandedOver(_))
            ),
            "a third owner was never shared"
        );
        stores.release(vec![input.clone()], true);
        assert_eq!(arena.stats().objects, 1, "the second task still owns it");
        // A refused payload gives back the hold it was shared with.
        arena.share(&reference).unwrap();
        let stale = StoreObject::Arena(Reference { generation: 999, ..reference });
        assert!(stores.adopt(&[input.clone(), stale]).is_err());
        stores.release(vec![input], true);
        assert_eq!(arena.stats().objects, 0);
    }
}
