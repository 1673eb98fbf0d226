//! Account stripes: writers in this process take the stripes of the accounts they touch
//! before they read them, so transfers on one busy account queue here instead of failing
//! each other's version checks. Other processes still meet at the version conditions.
//!
//! A writer takes all of its stripes at once or waits for all of them, in arrival order: a
//! newcomer does not take a stripe an earlier writer is waiting for. Taking them one at a
//! time in index order would also never deadlock, but a writer of many accounts (a
//! matcher's step holds hundreds) would wait at each stripe in turn while writers that came
//! after it took the ones further on, one commit after another.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

pub struct Stripes {
    count: usize,
    state: Mutex<State>,
}

struct State {
    held: Vec<bool>,
    /// How many waiters want each stripe.
    wanted: Vec<u32>,
    waiting: VecDeque<Waiter>,
    next_id: u64,
    /// Per stripe, the last pass of [`State::grant`] that found it wanted by a waiter
    /// before the one it looks at (a number, so the marks need no clearing).
    blocked: Vec<u64>,
    pass: u64,
}

struct Waiter {
    id: u64,
    stripes: Vec<usize>,
    wake: Arc<Notify>,
}

/// Stripes taken; dropping it gives them back.
pub struct Held<'a> {
    owner: &'a Stripes,
    stripes: Vec<usize>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.owner.state().release(&self.stripes);
    }
}

/// A writer in line. Dropped before its turn (its task cancelled), it leaves the line;
/// dropped after, it gives back what it was granted.
struct Waiting<'a> {
    owner: &'a Stripes,
    id: u64,
    stripes: Vec<usize>,
    wake: Arc<Notify>,
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.owner.state();
        if let Some(at) = state.position(self.id) {
            if let Some(waiter) = state.waiting.remove(at) {
                for &s in &waiter.stripes {
                    state.wanted[s] -= 1;
                }
            }
            state.grant();
        } else {
            state.release(&self.stripes);
        }
    }
}

impl Stripes {
    pub fn new(count: usize) -> Self {
        Self {
            count,
            state: Mutex::new(State {
                held: vec![false; count],
                wanted: vec![0; count],
                waiting: VecDeque::new(),
                next_id: 0,
                blocked: vec![0; count],
                pass: 0,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stripe of each account, in order and each once.
    pub fn of<'s>(&self, accounts: impl IntoIterator<Item = &'s str>) -> Vec<usize> {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let count = self.count as u64;
        let hasher = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
        let mut stripes: Vec<usize> =
            accounts.into_iter().map(|account| (hasher.hash_one(account) % count) as usize).collect();
        stripes.sort_unstable();
        stripes.dedup();
        stripes
    }

    /// Takes `stripes` (from [`Stripes::of`]) once all of them are free and no writer that
    /// came before wants any of them.
    pub async fn take(&self, stripes: Vec<usize>) -> Held<'_> {
        let mut waiting = {
            let mut state = self.state();
            if stripes.iter().all(|&s| !state.held[s] && state.wanted[s] == 0) {
                for &s in &stripes {
                    state.held[s] = true;
                }
                return Held { owner: self, stripes };
            }
            let (id, wake) = (state.next_id, Arc::new(Notify::new()));
            state.next_id += 1;
            for &s in &stripes {
                state.wanted[s] += 1;
            }
            state.waiting.push_back(Waiter { id, stripes: stripes.clone(), wake: wake.clone() });
            Waiting { owner: self, id, stripes, wake, done: false }
        };
        loop {
            // `notify_one` keeps its permit for a waiter not polling yet: no wake is lost.
            waiting.wake.notified().await;
            if self.state().position(waiting.id).is_none() {
                waiting.done = true;
                return Held { owner: self, stripes: std::mem::take(&mut waiting.stripes) };
            }
        }
    }
}

impl State {
    fn position(&self, id: u64) -> Option<usize> {
        self.waiting.iter().position(|w| w.id == id)
    }

    fn release(&mut self, stripes: &[usize]) {
        for &s in stripes {
            self.held[s] = false;
        }
        self.grant();
    }

    /// Lets in, in arrival order, every waiter whose stripes are all free and wanted by no
    /// waiter before it.
    fn grant(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        self.pass += 1;
        let pass = self.pass;
        let mut at = 0;
        while at < self.waiting.len() {
            let waiter = &self.waiting[at];
            if waiter.stripes.iter().all(|&s| !self.held[s] && self.blocked[s] != pass) {
                let Some(waiter) = self.waiting.remove(at) else { break };
                for &s in &waiter.stripes {
                    self.held[s] = true;
                    self.wanted[s] -= 1;
                }
                waiter.wake.notify_one();
            } else {
                for &s in &waiter.stripes {
                    self.blocked[s] = pass;
                }
                at += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::Poll;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_writer_waits_until_every_stripe_it_needs_is_free_and_then_holds_them_all() {
        let stripes = Arc::new(Stripes::new(8));
        let first = stripes.take(vec![1]).await;
        let second = stripes.take(vec![3]).await;
        // GIVEN a writer of stripes 1 to 3 waiting for two holders
        let many = tokio::spawn({
            let stripes = stripes.clone();
            async move {
                let _ = stripes.take(vec![1, 2, 3]).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!many.is_finished());
        drop(first);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!many.is_finished(), "stripe 3 is still held");
        drop(second);
        tokio::time::timeout(Duration::from_secs(5), many).await.unwrap().unwrap();
        // THEN everything it held is free again
        assert!(poll_once(&mut Box::pin(stripes.take(vec![0, 1, 2, 3, 7]))).is_ready());
    }

    #[tokio::test]
    async fn a_newcomer_queues_behind_an_earlier_waiter_of_the_same_stripe() {
        let stripes = Stripes::new(8);
        let holder = stripes.take(vec![1]).await;
        // GIVEN a writer of 1 and 2 in line for 1
        let mut earlier = Box::pin(stripes.take(vec![1, 2]));
        assert!(poll_once(&mut earlier).is_pending());
        // WHEN a writer of 2 alone comes: 2 is free, but the earlier writer wants it
        let mut newcomer = Box::pin(stripes.take(vec![2]));
        assert!(poll_once(&mut newcomer).is_pending());
        // and a writer of 5 comes: nobody wants 5, so it goes at once
        assert!(poll_once(&mut Box::pin(stripes.take(vec![5]))).is_ready());
        // THEN when 1 is free, the earlier writer goes first, and the newcomer after it
        drop(holder);
        let Poll::Ready(first) = poll_once(&mut earlier) else { panic!("the earlier writer was not let in") };
        assert!(poll_once(&mut newcomer).is_pending());
        drop(first);
        assert!(poll_once(&mut newcomer).is_ready());
    }

    fn poll_once<F: Future>(future: &mut std::pin::Pin<Box<F>>) -> Poll<F::Output> {
        future.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    }

    #[tokio::test]
    async fn a_writer_cancelled_in_line_leaves_it_and_one_cancelled_after_its_turn_gives_back() {
        let stripes = Stripes::new(4);
        let holder = stripes.take(vec![0]).await;
        // GIVEN a writer in line for 0 and 1, cancelled
        let mut in_line = Box::pin(stripes.take(vec![0, 1]));
        assert!(poll_once(&mut in_line).is_pending());
        drop(in_line);
        // THEN 1 is not kept from a newcomer
        let one = poll_once(&mut Box::pin(stripes.take(vec![1])));
        assert!(one.is_ready());
        drop(one);
        // GIVEN a writer in line, let in when the holder leaves, and cancelled before it ran
        let mut granted = Box::pin(stripes.take(vec![0, 1]));
        assert!(poll_once(&mut granted).is_pending());
        drop(holder);
        drop(granted);
        // THEN what it was let in with is free again
        assert!(poll_once(&mut Box::pin(stripes.take(vec![0, 1, 2, 3]))).is_ready());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn writers_of_overlapping_stripes_never_hold_one_together_and_all_get_through() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let stripes = Arc::new(Stripes::new(16));
        let users: Arc<Vec<AtomicU32>> = Arc::new((0..16).map(|_| AtomicU32::new(0)).collect());
        let mut tasks = tokio::task::JoinSet::new();
        for writer in 0..64u64 {
            let (stripes, users) = (stripes.clone(), users.clone());
            tasks.spawn(async move {
                let mut dice = writer.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for round in 0..50 {
                    dice ^= dice << 13;
                    dice ^= dice >> 7;
                    dice ^= dice << 17;
                    // Mostly two stripes, now and then twelve (a large step).
                    let width = if round % 10 == 0 { 12 } else { 2 };
                    let mut wanted: Vec<usize> = (0..width).map(|n| ((dice >> (4 * n)) % 16) as usize).collect();
                    wanted.sort_unstable();
                    wanted.dedup();
                    let held = stripes.take(wanted.clone()).await;
                    for &s in &wanted {
                        assert_eq!(users[s].fetch_add(1, Ordering::SeqCst), 0, "stripe {s} held twice");
                    }
                    tokio::task::yield_now().await;
                    for &s in &wanted {
                        users[s].fetch_sub(1, Ordering::SeqCst);
                    }
                    drop(held);
                }
            });
        }
        let all = async {
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(30), all).await.expect("every writer got through");
        assert!(stripes.state().waiting.is_empty());
        assert!(stripes.state().held.iter().all(|held| !held));
    }
}
