//! A channel bounded by bytes, not by messages: what `notif tail`'s socket
//! threads hand to the thread writing stdout.
//!
//! A channel of N messages holds N of the largest line (1,024 lines of 60 MiB
//! took tail past 4 GB). Here every message has a cost, and a sender waits
//! before it even builds its message (copies its line) until the messages in
//! flight (queued, or being written by the receiver) cost at most `budget`
//! with it; a message costing more than the whole budget goes alone. So what
//! is in flight never exceeds max(budget, the largest message).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

struct State<T> {
    queue: VecDeque<(T, usize)>,
    /// Cost of the messages queued and of the one the receiver holds.
    in_flight: usize,
    receiver_gone: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Signalled when a message is queued.
    filled: Condvar,
    /// Signalled when cost is given back (or the receiver is gone).
    drained: Condvar,
    budget: usize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panicking thread leaves a consistent queue: keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        Sender {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The receiver is gone: nobody will take the message.
#[derive(Debug)]
pub struct Disconnected;

impl<T> Sender<T> {
    /// Waits for room for `cost` bytes, then builds the message and queues it.
    pub fn send_with(&self, cost: usize, build: impl FnOnce() -> T) -> Result<(), Disconnected> {
        let permit = self.reserve(cost)?;
        // Build outside the lock: copying a large line takes a while.
        permit.send(build());
        Ok(())
    }

    /// Waits for room for `cost` bytes and holds it: the caller builds its
    /// message (copies its line) only then, and sends it with the permit.
    pub fn reserve(&self, cost: usize) -> Result<Permit<'_, T>, Disconnected> {
        let shared = &*self.shared;
        let mut state = shared.lock();
        loop {
            if state.receiver_gone {
                return Err(Disconnected);
            }
            if state.in_flight == 0 || state.in_flight.saturating_add(cost) <= shared.budget {
                break;
            }
            state = shared
                .drained
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        state.in_flight += cost;
        Ok(Permit {
            sender: self,
            cost: Some(cost),
        })
    }
}

/// Room reserved in the channel for one message (see [`Sender::reserve`]);
/// given back if dropped unused.
pub struct Permit<'a, T> {
    sender: &'a Sender<T>,
    cost: Option<usize>,
}

impl<T> Permit<'_, T> {
    pub fn send(mut self, message: T) {
        let Some(cost) = self.cost.take() else {
            return;
        };
        let shared = &*self.sender.shared;
        let mut state = shared.lock();
        if state.receiver_gone {
            state.in_flight -= cost;
            return;
        }
        state.queue.push_back((message, cost));
        drop(state);
        shared.filled.notify_one();
    }
}

impl<T> Drop for Permit<'_, T> {
    fn drop(&mut self) {
        if let Some(cost) = self.cost.take() {
            let shared = &*self.sender.shared;
            shared.lock().in_flight -= cost;
            shared.drained.notify_all();
        }
    }
}

pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// The cost of the message last handed out, given back at the next
    /// receive: the caller is done with it (written it) by then.
    held: usize,
}

impl<T> Receiver<T> {
    fn give_back(&mut self, state: &mut State<T>) {
        if self.held > 0 {
            state.in_flight -= self.held;
            self.held = 0;
            self.shared.drained.notify_all();
        }
    }

    /// The next message, waiting up to `timeout`; None if none came.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<T> {
        let deadline = Instant::now().checked_add(timeout);
        let shared = Arc::clone(&self.shared);
        let mut state = shared.lock();
        self.give_back(&mut state);
        loop {
            if let Some((message, cost)) = state.queue.pop_front() {
                self.held = cost;
                return Some(message);
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return None;
            }
            state = shared
                .filled
                .wait_timeout(state, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// The next message if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        let shared = Arc::clone(&self.shared);
        let mut state = shared.lock();
        self.give_back(&mut state);
        let (message, cost) = state.queue.pop_front()?;
        self.held = cost;
        Some(message)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_gone = true;
        state.queue.clear();
        drop(state);
        self.shared.drained.notify_all();
    }
}

/// A channel whose messages in flight cost at most `budget` bytes together
/// (or one message alone, if it costs more).
pub fn channel<T>(budget: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            in_flight: 0,
            receiver_gone: false,
        }),
        filled: Condvar::new(),
        drained: Condvar::new(),
        budget,
    });
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared, held: 0 },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_in_flight_stays_within_the_budget_or_one_message() {
        let (tx, mut rx) = channel::<Vec<u8>>(100);
        let sender = std::thread::spawn(move || {
            for size in [60, 30, 20, 500, 10] {
                tx.send_with(size, || vec![0; size]).unwrap();
            }
        });
        let mut got = Vec::new();
        while got.len() < 5 {
            if let Some(message) = rx.recv_timeout(Duration::from_secs(30)) {
                let state = rx.shared.lock();
                assert!(
                    state.in_flight <= 100 || state.in_flight == message.len(),
                    "{} in flight",
                    state.in_flight
                );
                drop(state);
                got.push(message.len());
            }
        }
        sender.join().unwrap();
        assert_eq!(got, [60, 30, 20, 500, 10]);
    }

    #[test]
    fn an_unused_permit_gives_its_room_back() {
        let (tx, mut rx) = channel::<u8>(10);
        let permit = tx.reserve(10).unwrap();
        assert_eq!(rx.shared.lock().in_flight, 10);
        drop(permit);
        assert_eq!(rx.shared.lock().in_flight, 0);
        tx.reserve(4).unwrap().send(7);
        assert_eq!(rx.try_recv(), Some(7));
        assert_eq!(rx.try_recv(), None);
        assert_eq!(rx.shared.lock().in_flight, 0);
    }

    #[test]
    fn a_sender_is_released_when_the_receiver_goes() {
        let (tx, rx) = channel::<u8>(10);
        tx.send_with(10, || 1).unwrap();
        let waiting = std::thread::spawn(move || tx.send_with(5, || 2));
        std::thread::sleep(Duration::from_millis(50));
        drop(rx);
        assert!(waiting.join().unwrap().is_err());
    }
}
