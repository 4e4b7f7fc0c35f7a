//! The image embeddings a session has computed, by slice and window, so that many prompts
//! on one slice cost one encoder pass; the least recently used is dropped past a bound.

use std::collections::HashMap;

use burn::prelude::*;

/// Embeddings kept per session: one slice is `256 × g × g` floats (1 MiB at g = 32; twice
/// that with fine features, which travel behind the embedding).
const MAX_CACHED_SLICES: usize = 96;

/// Axis, slice index, window (`[row0, col0, side]`; None: the whole slice), mirrored.
pub(super) type CacheKey = (usize, usize, Option<[usize; 3]>, bool);

/// One encoded slice or window: its embedding, the size it had and the model-input size it
/// was resized to.
pub(super) struct Encoded {
    pub(super) embedding: Tensor<4>,
    pub(super) original: (usize, usize),
    pub(super) input: (usize, usize),
    last_use: u64,
}

/// Encoded slices by key, with a use clock for eviction.
#[derive(Default)]
pub(super) struct EmbeddingCache {
    slices: HashMap<CacheKey, Encoded>,
    clock: u64,
}

impl EmbeddingCache {
    /// Counts a use of `key`: true when it is cached (and now the most recently used).
    pub(super) fn touch(&mut self, key: &CacheKey) -> bool {
        self.clock += 1;
        match self.slices.get_mut(key) {
            Some(e) => {
                e.last_use = self.clock;
                true
            }
            None => false,
        }
    }

    /// Stores an encoding as used by the last [`touch`](Self::touch), first dropping the
    /// least recently used one when the cache is full.
    pub(super) fn insert(
        &mut self,
        key: CacheKey,
        embedding: Tensor<4>,
        original: (usize, usize),
        input: (usize, usize),
    ) {
        if self.slices.len() >= MAX_CACHED_SLICES {
            if let Some(oldest) = self
                .slices
                .iter()
                .min_by_key(|(_, e)| e.last_use)
                .map(|(k, _)| *k)
            {
                self.slices.remove(&oldest);
            }
        }
        self.slices.insert(
            key,
            Encoded {
                embedding,
                original,
                input,
                last_use: self.clock,
            },
        );
    }

    pub(super) fn get(&self, key: &CacheKey) -> Option<&Encoded> {
        self.slices.get(key)
    }

    pub(super) fn contains(&self, key: &CacheKey) -> bool {
        self.slices.contains_key(key)
    }

    pub(super) fn clear(&mut self) {
        self.slices.clear();
    }
}
