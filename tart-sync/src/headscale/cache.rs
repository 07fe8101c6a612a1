//! The last node-list answer, kept to recognise the next one unchanged
//! while it arrives, and [`Shared`], what a poll returns.

use std::sync::{Arc, Mutex};

use super::error::HeadscaleError;
use super::model::{parse_node_list, NodeList};

/// A node list shared with the client's cache, and whether headscale's
/// answer differed from the previous one.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The list (shared: not copied when the answer is unchanged).
    pub list: Arc<NodeList>,
    /// False when headscale answered exactly the same bytes as last time.
    pub changed: bool,
}

/// The last node-list answer, byte for byte, and the list parsed from it:
/// an idle poll (headscale answering the same bytes as last time) is
/// recognised while it arrives and not parsed again.
///
/// A new answer is read into the kept buffer, compared with the old bytes
/// chunk by chunk and copied only from the first difference on, so an
/// unchanged answer costs one `memcmp` and no allocation, and memory holds
/// one answer, never two. Exact comparison: no hash, no collisions.
#[derive(Default)]
pub(super) struct ListCache {
    last: Mutex<Option<Kept>>,
}

/// What the cache keeps between polls.
struct Kept {
    /// The last answer's bytes (its capacity is reused for the next one).
    body: Vec<u8>,
    /// The list parsed from `body`; `None` when `body` does not hold a
    /// complete answer that parsed.
    list: Option<Arc<NodeList>>,
}

/// An answer being read into the cache's buffer: [`ListCache::begin`],
/// [`Incoming::push`] each chunk, [`Incoming::finish`]. Dropped unfinished
/// (a failed or cancelled read), it returns the buffer to the cache without
/// a list, so the next answer is parsed.
pub(super) struct Incoming<'c> {
    cache: &'c ListCache,
    body: Vec<u8>,
    /// The previous answer's list, while it may still be the answer.
    previous_list: Option<Arc<NodeList>>,
    /// Length of the previous answer (0 when there is none).
    previous_len: usize,
    /// Bytes of the new answer received so far.
    len: usize,
    /// Whether those bytes equal the previous answer's first `len` bytes.
    same: bool,
    /// The list of the new answer, once parsed (kept with `body`).
    list: Option<Arc<NodeList>>,
}

impl ListCache {
    /// Starts reading an answer announced as `announced` bytes (0 when not
    /// announced). Takes the kept buffer out: no lock is held while the
    /// answer arrives.
    pub(super) fn begin(&self, announced: usize) -> Incoming<'_> {
        let kept = self.last.lock().unwrap_or_else(|e| e.into_inner()).take();
        let (mut body, previous_list) = kept.map_or((Vec::new(), None), |k| (k.body, k.list));
        let previous_len = if previous_list.is_some() {
            body.len()
        } else {
            0
        };
        body.reserve_exact(announced.saturating_sub(body.len()));
        Incoming {
            cache: self,
            body,
            previous_list,
            previous_len,
            len: 0,
            same: true,
            list: None,
        }
    }

    /// Reads `body` as if it arrived in chunks of 4 kB.
    #[cfg(test)]
    fn parse(&self, body: &[u8]) -> Result<Shared, HeadscaleError> {
        let mut incoming = self.begin(body.len());
        for chunk in body.chunks(4096) {
            incoming.push(chunk);
        }
        incoming.finish()
    }
}

impl Incoming<'_> {
    /// Bytes of the answer received so far.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Adds the next chunk of the answer.
    pub(super) fn push(&mut self, chunk: &[u8]) {
        let start = self.len;
        let end = start.saturating_add(chunk.len());
        self.len = end;
        if self.same && end <= self.previous_len && self.body.get(start..end) == Some(chunk) {
            return;
        }
        self.same = false;
        match self.body.get_mut(start..end) {
            Some(old) => old.copy_from_slice(chunk),
            None => {
                self.body.truncate(start);
                self.body.extend_from_slice(chunk);
            }
        }
    }

    /// The answer is complete: the previous list when it is byte for byte
    /// the previous answer, else the answer parsed.
    pub(super) fn finish(mut self) -> Result<Shared, HeadscaleError> {
        self.body.truncate(self.len);
        if self.same && self.len == self.previous_len {
            if let Some(list) = self.previous_list.take() {
                tracing::trace!(
                    bytes = self.len,
                    "headscale's answer is unchanged; not parsed again"
                );
                self.list = Some(list.clone());
                return Ok(Shared {
                    list,
                    changed: false,
                });
            }
        }
        // Freed before parsing the new one (peak memory).
        self.previous_list = None;
        // A fleet that shrank does not keep a buffer for the old one.
        if self.body.capacity() > self.len.saturating_mul(2).saturating_add(1 << 20) {
            self.body.shrink_to_fit();
        }
        let list = Arc::new(parse_node_list(&self.body)?);
        self.list = Some(list.clone());
        Ok(Shared {
            list,
            changed: true,
        })
    }
}

impl Drop for Incoming<'_> {
    fn drop(&mut self) {
        let mut body = std::mem::take(&mut self.body);
        if self.list.is_none() {
            // A failed, refused or cancelled read: what arrived is of no use,
            // and may be far larger than a good answer (a flood is read up to
            // MAX_BODY_BYTES before it is refused). Keep no more room than
            // the previous answer needed, not the flood until the next poll.
            body.clear();
            body.shrink_to(self.previous_len);
        }
        let kept = Kept {
            body,
            list: self.list.take(),
        };
        *self.cache.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `body` into `cache` in chunks of `size`.
    fn feed(cache: &ListCache, body: &[u8], size: usize) -> Result<Shared, HeadscaleError> {
        let mut incoming = cache.begin(0);
        for chunk in body.chunks(size) {
            incoming.push(chunk);
        }
        incoming.finish()
    }

    /// A headscale 0.28-style answer with `n` distinct nodes.
    fn body(n: usize) -> Vec<u8> {
        let nodes: Vec<String> = (1..=n)
            .map(|id| {
                format!(
                    concat!(
                        r#"{{"id":"{id}","name":"tart-host-{id}","givenName":"tart-{id}","#,
                        r#""user":{{"id":"2147455555","name":"tagged-devices"}},"#,
                        r#""ipAddresses":["100.64.0.{id}"],"expiry":null,"#,
                        r#""lastSeen":"2026-07-10T08:15:02.123456789Z","online":true,"#,
                        r#""tags":["tag:tart"]}}"#
                    ),
                    id = id
                )
            })
            .collect();
        format!(r#"{{"nodes":[{}]}}"#, nodes.join(",")).into_bytes()
    }

    #[test]
    fn unchanged_answer_is_recognised_whatever_the_chunks() {
        let cache = ListCache::default();
        let body = body(3);
        assert!(feed(&cache, &body, 4096).is_ok_and(|s| s.changed));
        for size in [1, 7, 100, 1000, body.len()] {
            let again = feed(&cache, &body, size);
            assert!(again.is_ok_and(|s| !s.changed), "chunks of {size}");
        }
    }

    #[test]
    fn every_difference_is_seen_and_parsed() {
        let cache = ListCache::default();
        let original_body = body(3);
        let nodes =
            |r: Result<Shared, HeadscaleError>| r.ok().map(|s| (s.changed, s.list.nodes.clone()));
        let (_, original) = nodes(feed(&cache, &original_body, 64)).unwrap();
        // A different name at each end and in the middle, a longer and a
        // shorter answer: each is parsed, and then recognised as unchanged.
        let mut others = Vec::new();
        for needle in [r#""tart-1""#, r#""tart-2""#, r#""tart-3""#] {
            let text = String::from_utf8(original_body.clone()).unwrap();
            let other = text.replacen(needle, r#""tart-x""#, 1);
            assert_ne!(other, text);
            others.push(other.into_bytes());
        }
        let mut longer = original_body.clone();
        longer.extend_from_slice(b"  ");
        others.push(longer);
        others.push(body(2));
        for other in &others {
            let (changed, parsed) = nodes(feed(&cache, other, 64)).unwrap();
            assert!(changed);
            assert_eq!(
                Some(parsed.clone()),
                parse_node_list(other).ok().map(|l| l.nodes)
            );
            assert_eq!(nodes(feed(&cache, other, 50)), Some((false, parsed)));
            // Back to the original: parsed again, the same nodes as the first time.
            assert_eq!(
                nodes(feed(&cache, &original_body, 64)),
                Some((true, original.clone()))
            );
        }
    }

    #[test]
    fn an_answer_cut_short_is_not_taken_for_the_previous_one() {
        let cache = ListCache::default();
        let body = body(3);
        assert!(feed(&cache, &body, 64).is_ok());
        // The read fails half-way (transport error, timeout, cancellation).
        {
            let mut incoming = cache.begin(body.len());
            for chunk in body[..body.len() / 2].chunks(64) {
                incoming.push(chunk);
            }
        }
        // The same bytes in full afterwards are parsed, not taken from memory.
        let again = feed(&cache, &body, 64);
        assert!(again.is_ok_and(|s| s.changed && s.list.nodes.len() == 3));
        assert!(feed(&cache, &body, 64).is_ok_and(|s| !s.changed));
    }

    /// The room kept for the next answer.
    fn kept_capacity(cache: &ListCache) -> usize {
        let kept = cache.last.lock().unwrap_or_else(|e| e.into_inner());
        kept.as_ref().map_or(0, |k| k.body.capacity())
    }

    #[test]
    fn a_flood_that_failed_is_not_kept() {
        let cache = ListCache::default();
        let good = body(3);
        assert!(feed(&cache, &good, 64).is_ok());
        let room = kept_capacity(&cache);
        assert!(room < 64 * 1024, "{room}");
        // 8 MB arrive and the read fails (too large, cut, timed out).
        {
            let mut incoming = cache.begin(0);
            for _ in 0..128 {
                incoming.push(&[b' '; 64 * 1024]);
            }
        }
        let room = kept_capacity(&cache);
        assert!(
            room <= good.len().max(64 * 1024),
            "{room} bytes kept after a failed read of 8 MB"
        );
        // The same for an answer that arrived in full and did not parse.
        assert!(cache.parse(&vec![b'x'; 4 << 20]).is_err());
        assert!(kept_capacity(&cache) < 64 * 1024);
        // Polls go on as before.
        assert!(feed(&cache, &good, 64).is_ok_and(|s| s.changed));
        assert!(feed(&cache, &good, 64).is_ok_and(|s| !s.changed));
    }

    #[test]
    fn unchanged_answer_is_not_parsed_again() {
        let cache = ListCache::default();
        let two = body(2);
        let list = |r: Result<Shared, HeadscaleError>| r.ok().map(|s| (*s.list).clone());
        let first = cache.parse(&two).unwrap();
        assert!(first.changed);
        let first = (*first.list).clone();
        assert_eq!(first.nodes.len(), 2);
        let again = cache.parse(&two).unwrap();
        assert!(
            !again.changed,
            "the same bytes again are reported unchanged"
        );
        assert_eq!(*again.list, first);

        // A hit returns the kept list: plant one to tell a hit from a parse.
        let planted = NodeList {
            nodes: first.nodes[..1].to_vec(),
            skipped: Vec::new(),
        };
        if let Some(kept) = cache
            .last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            kept.list = Some(Arc::new(planted.clone()));
        }
        assert_eq!(list(cache.parse(&two)), Some(planted));

        // Another body is parsed, and kept in turn.
        let three = body(3);
        assert_eq!(list(cache.parse(&three)).map(|l| l.nodes.len()), Some(3));
        assert_eq!(list(cache.parse(&two)), Some(first));

        // An error is returned as such and not kept.
        assert!(cache.parse(b"{}").is_err());
        assert!(cache.parse(b"{}").is_err());
        assert_eq!(list(cache.parse(&three)).map(|l| l.nodes.len()), Some(3));
    }
}
