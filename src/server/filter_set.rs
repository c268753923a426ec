//! The distinct filters subscribers asked for, each evaluated once per
//! notification however many subscribers share it.
//!
//! A peer chooses its filter, so the cost of matching must not be its to
//! choose: requests are limited to `MAX_PATTERNS` patterns of at most
//! `MAX_PATTERN_BYTES` per list, subscribers with equal filters share one
//! evaluation, and each filter remembers its verdict per distinct field value
//! (a daemon emits a handful of event types and publisher ids, over and over),
//! so the patterns run once per new value, not once per notification.

use std::collections::HashMap;
use std::sync::Arc;

use crate::subscription::{glob_matches, Filter, MessageFields};

/// Verdicts remembered per filter and field; past it the memory starts over.
const CACHE_ENTRIES: usize = 4096;
/// Memory all filters' caches together may hold: peers choose how many
/// distinct filters there are, and the host may emit endless distinct values
/// (ids in event types), so per-filter limits alone would let a thousand
/// filters hold a thousand full caches. Each cache gets an equal share (a
/// thousand filters: 8 KiB per list, some 60 values); past it, it starts
/// over (a cache that fills that fast helps little anyway).
/// The budget is also at most an eighth of the memory limit, which it is
/// counted in (see `FilterSet::new`).
const CACHE_BUDGET: usize = 16 * 1024 * 1024;
/// The same for the filter one resumed history is read through (one per
/// resuming subscriber, for as long as it reads its history).
pub(crate) const HISTORY_CACHE_BUDGET: usize = 64 * 1024;
/// What one remembered verdict costs beside its value's bytes: the key's
/// allocation and the table's slot, at the table's worst load.
const ENTRY_COST: usize = 16 + 2 * (std::mem::size_of::<(Box<str>, bool)>() + 1);

/// Names one filter in the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FilterId(usize);

/// The memory one filter takes (its patterns and their lists, allocation
/// included), as memory_limit counts it.
pub(crate) fn filter_footprint(filter: &Filter) -> usize {
    const ALLOCATION: usize = 16;
    let list = |l: &Vec<String>| {
        l.capacity() * std::mem::size_of::<String>()
            + ALLOCATION
            + l.iter().map(|p| p.capacity() + ALLOCATION).sum::<usize>()
    };
    std::mem::size_of::<Filter>()
        + 2 * ALLOCATION
        + list(&filter.event_types)
        + list(&filter.priorities)
        + list(&filter.publishers)
}

#[derive(Debug)]
struct Slot {
    /// Shared with the table that finds it and with resumed histories: one copy.
    filter: Arc<Filter>,
    users: usize,
    event_types: Verdicts,
    priorities: Verdicts,
    publishers: Verdicts,
    /// The verdict for each message of the batch being distributed.
    matches: Vec<bool>,
}

/// The verdicts of one list of globs, per field value.
#[derive(Debug, Default)]
struct Verdicts {
    known: HashMap<Box<str>, bool>,
    /// What `known` holds, as CACHE_BUDGET counts it.
    bytes: usize,
}

/// Whether a glob list matches a value.
fn any_glob(patterns: &[String], value: &str) -> bool {
    patterns.iter().any(|p| glob_matches(p, value))
}

/// Whether a priority list holds a value (ASCII case ignored).
fn any_priority(priorities: &[String], value: &str) -> bool {
    priorities.iter().any(|p| p.eq_ignore_ascii_case(value))
}

impl Verdicts {
    /// `share`: the bytes this cache may hold; `matches`: how the list is
    /// matched against a value the cache does not know yet.
    fn check(
        &mut self,
        patterns: &[String],
        value: Option<&str>,
        share: usize,
        matches: fn(&[String], &str) -> bool,
    ) -> bool {
        if patterns.is_empty() {
            return true;
        }
        let Some(value) = value else {
            return false;
        };
        if let Some(&verdict) = self.known.get(value) {
            return verdict;
        }
        let verdict = matches(patterns, value);
        let cost = value.len() + ENTRY_COST;
        if self.known.len() >= CACHE_ENTRIES || self.bytes + cost > share {
            self.forget();
        }
        if cost <= share {
            self.known.insert(value.into(), verdict);
            self.bytes += cost;
        }
        verdict
    }

    /// Starts over when over `share` (more filters now share the budget).
    fn fit(&mut self, share: usize) {
        if self.bytes > share {
            self.forget();
        }
    }

    /// Starts over, giving the table back too (clear() would keep it).
    fn forget(&mut self) {
        self.known = HashMap::new();
        self.bytes = 0;
    }
}

/// One filter with verdict caches of its own: what a resumed history is read
/// through, so that its messages cost a hash look-up each, as live ones do,
/// not every pattern every time.
#[derive(Debug)]
pub(crate) struct CachedFilter {
    filter: Arc<Filter>,
    event_types: Verdicts,
    priorities: Verdicts,
    publishers: Verdicts,
}

impl CachedFilter {
    pub(crate) fn new(filter: Arc<Filter>) -> CachedFilter {
        CachedFilter {
            filter,
            event_types: Verdicts::default(),
            priorities: Verdicts::default(),
            publishers: Verdicts::default(),
        }
    }

    pub(crate) fn matches(&mut self, message: &MessageFields<'_>) -> bool {
        let filter = &self.filter;
        let share = HISTORY_CACHE_BUDGET / 3;
        self.priorities.check(
            &filter.priorities,
            message.priority.as_deref(),
            share,
            any_priority,
        ) && self.event_types.check(
            &filter.event_types,
            message.event_type.as_deref(),
            share,
            any_glob,
        ) && self.publishers.check(
            &filter.publishers,
            message.publisher_id.as_deref(),
            share,
            any_glob,
        )
    }
}

#[derive(Debug)]
pub(crate) struct FilterSet {
    slots: Vec<Option<Slot>>,
    by_filter: HashMap<Arc<Filter>, usize>,
    free: Vec<usize>,
    /// What every filter's verdict caches may hold together.
    cache_budget: usize,
    /// What the filters' patterns take (filter_footprint, each counted once).
    patterns_bytes: usize,
    /// What the verdict caches held after the last evaluate.
    cache_bytes: usize,
}

impl FilterSet {
    /// `memory_limit`: the publisher's, which the caches are counted in (an
    /// eighth of it at most).
    pub(crate) fn new(memory_limit: usize) -> FilterSet {
        FilterSet {
            slots: Vec::new(),
            by_filter: HashMap::new(),
            free: Vec::new(),
            cache_budget: CACHE_BUDGET.min(memory_limit / 8),
            patterns_bytes: 0,
            cache_bytes: 0,
        }
    }

    /// The memory the set takes: patterns and verdict caches.
    pub(crate) fn footprint(&self) -> usize {
        self.patterns_bytes + self.cache_bytes
    }

    /// What adding `filter` would add to the footprint (nothing when an
    /// equal one is there).
    pub(crate) fn cost_to_add(&self, filter: &Filter) -> usize {
        if self.by_filter.contains_key(filter) {
            0
        } else {
            filter_footprint(filter)
        }
    }

    /// Registers one more user of `filter`.
    pub(crate) fn add(&mut self, filter: Filter) -> FilterId {
        if let Some(&index) = self.by_filter.get(&filter) {
            self.slots[index].as_mut().expect("indexed slot").users += 1;
            return FilterId(index);
        }
        self.patterns_bytes += filter_footprint(&filter);
        let filter = Arc::new(filter);
        let slot = Slot {
            filter: Arc::clone(&filter),
            users: 1,
            event_types: Verdicts::default(),
            priorities: Verdicts::default(),
            publishers: Verdicts::default(),
            matches: Vec::new(),
        };
        let index = match self.free.pop() {
            Some(index) => {
                self.slots[index] = Some(slot);
                index
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        self.by_filter.insert(filter, index);
        FilterId(index)
    }

    /// One user of the filter is gone.
    pub(crate) fn remove(&mut self, id: FilterId) {
        let slot = self.slots[id.0].as_mut().expect("a live filter");
        slot.users -= 1;
        if slot.users == 0 {
            let slot = self.slots[id.0].take().expect("checked above");
            self.by_filter.remove(&slot.filter);
            self.patterns_bytes -= filter_footprint(&slot.filter);
            self.cache_bytes = self.cache_bytes.saturating_sub(
                slot.event_types.bytes + slot.priorities.bytes + slot.publishers.bytes,
            );
            self.free.push(id.0);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_filter.is_empty()
    }

    /// Decides, for every live filter, which of a batch's messages it lets through.
    pub(crate) fn evaluate(&mut self, fields: &[MessageFields<'_>]) {
        // Three caches per filter, equal shares of the budget.
        let share = self.cache_budget / (3 * self.by_filter.len().max(1));
        let mut cache_bytes = 0;
        for slot in self.slots.iter_mut().flatten() {
            slot.event_types.fit(share);
            slot.priorities.fit(share);
            slot.publishers.fit(share);
            slot.matches.clear();
            let filter = &slot.filter;
            for message in fields {
                let verdict = slot.priorities.check(
                    &filter.priorities,
                    message.priority.as_deref(),
                    share,
                    any_priority,
                ) && slot.event_types.check(
                    &filter.event_types,
                    message.event_type.as_deref(),
                    share,
                    any_glob,
                ) && slot.publishers.check(
                    &filter.publishers,
                    message.publisher_id.as_deref(),
                    share,
                    any_glob,
                );
                slot.matches.push(verdict);
            }
            cache_bytes += slot.event_types.bytes + slot.priorities.bytes + slot.publishers.bytes;
        }
        self.cache_bytes = cache_bytes;
    }

    /// The verdicts of the last `evaluate` for one filter.
    pub(crate) fn matches(&self, id: FilterId) -> &[bool] {
        &self.slots[id.0].as_ref().expect("a live filter").matches
    }

    pub(crate) fn filter(&self, id: FilterId) -> &Filter {
        &self.slots[id.0].as_ref().expect("a live filter").filter
    }

    /// The filter itself, shared (for a resumed history to be read through).
    pub(crate) fn shared(&self, id: FilterId) -> Arc<Filter> {
        Arc::clone(&self.slots[id.0].as_ref().expect("a live filter").filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn fields(event_type: &str) -> MessageFields<'static> {
        MessageFields {
            event_type: Some(Cow::Owned(event_type.to_string())),
            priority: Some(Cow::Borrowed("INFO")),
            publisher_id: None,
        }
    }

    #[test]
    fn equal_filters_share_a_slot_and_verdicts_agree_with_the_filter() {
        let mut set = FilterSet::new(1 << 30);
        let filter = Filter {
            event_types: vec!["compute.*".into()],
            priorities: vec!["info".into()],
            publishers: vec![],
        };
        let a = set.add(filter.clone());
        let b = set.add(filter.clone());
        assert_eq!(a, b);
        let other = set.add(Filter {
            publishers: vec!["x".into()],
            ..Filter::default()
        });
        assert_ne!(a, other);
        let batch = [
            fields("compute.start"),
            fields("image.x"),
            fields("compute.end"),
        ];
        set.evaluate(&batch);
        assert_eq!(set.matches(a), &[true, false, true]);
        assert_eq!(set.matches(other), &[false, false, false]);
        for message in &batch {
            assert_eq!(
                filter.matches(message),
                set.matches(a)[batch.iter().position(|m| m == message).unwrap()]
            );
        }
        set.remove(a);
        set.remove(b);
        set.remove(other);
        assert!(set.is_empty());
    }

    #[test]
    fn priority_verdicts_are_cached_like_the_others() {
        let mut set = FilterSet::new(1 << 30);
        let priorities: Vec<String> = (0..64).map(|i| format!("p{i}")).collect();
        let id = set.add(Filter {
            priorities: priorities.clone(),
            ..Filter::default()
        });
        let message = |p: &str| MessageFields {
            event_type: None,
            priority: Some(Cow::Owned(p.to_string())),
            publisher_id: None,
        };
        set.evaluate(&[message("P63"), message("info"), message("P63")]);
        assert_eq!(set.matches(id), &[true, false, true]);
        let slot = set.slots[id.0].as_ref().unwrap();
        // Two distinct values: two verdicts remembered, none matched twice.
        assert_eq!(slot.priorities.known.len(), 2);
        assert!(slot.priorities.bytes > 0);
        assert_eq!(set.footprint(), set.patterns_bytes + set.cache_bytes);
    }

    #[test]
    fn a_filter_is_stored_once_and_its_memory_is_counted_and_given_back() {
        let mut set = FilterSet::new(1 << 30);
        let filter = Filter {
            event_types: vec!["x".repeat(200); 64],
            ..Filter::default()
        };
        let cost = set.cost_to_add(&filter);
        assert!(cost >= 64 * 200, "{cost}");
        let a = set.add(filter.clone());
        assert_eq!(
            set.cost_to_add(&filter),
            0,
            "an equal filter costs nothing more"
        );
        let b = set.add(filter.clone());
        assert_eq!(set.footprint(), cost);
        // One allocation shared by the table and the slot.
        assert_eq!(std::sync::Arc::strong_count(&set.shared(a)), 3);
        set.remove(a);
        set.remove(b);
        assert_eq!(set.footprint(), 0);
    }

    #[test]
    fn all_caches_together_stay_within_the_budget_and_agree_with_the_filters() {
        let mut set = FilterSet::new(1 << 30);
        let filters: Vec<Filter> = (0..300)
            .map(|i| Filter {
                event_types: vec![format!("e{i}.*"), "x*".into()],
                publishers: vec![format!("p{i}*"), "*".into()],
                ..Filter::default()
            })
            .collect();
        let ids: Vec<FilterId> = filters.iter().map(|f| set.add(f.clone())).collect();
        let pad = "v".repeat(200);
        for round in 0..6 {
            let batch: Vec<MessageFields<'static>> = (0..1000)
                .map(|i| MessageFields {
                    event_type: Some(Cow::Owned(format!("x{round}.{i}.{pad}"))),
                    priority: None,
                    publisher_id: Some(Cow::Owned(format!("p{i}.{pad}"))),
                })
                .collect();
            set.evaluate(&batch);
            let held: usize = set
                .slots
                .iter()
                .flatten()
                .map(|s| s.event_types.bytes + s.priorities.bytes + s.publishers.bytes)
                .sum();
            assert!(held <= CACHE_BUDGET, "{held} bytes cached");
            assert_eq!(held, set.cache_bytes);
            for (filter, &id) in filters.iter().zip(&ids).step_by(37) {
                for (message, &verdict) in batch.iter().zip(set.matches(id)) {
                    assert_eq!(filter.matches(message), verdict);
                }
            }
        }
    }
}
