//! Who may touch a connection's requests next: the readiness loop or the worker answering it.
//!
//! One atomic per connection, three states. `IDLE`: nobody holds a request, the loop may parse
//! and hand over the next one. `BUSY`: a worker holds one and nothing waits behind it; the
//! worker writes its answer and, if the socket took all of it, sets `IDLE` without telling the
//! loop (the common exchange costs the loop nothing). `WANTED`: a worker holds one and the loop
//! has input or an end of stream waiting; the worker must hand the connection back through the
//! loop's inbox, and the connection stays `WANTED` until the loop takes it back.
//!
//! Only the loop leaves `IDLE` ([`Handoff::hand_over`]); only the loop returns to `IDLE` from
//! `WANTED` ([`Handoff::take_back`]). So while a connection is `IDLE`, no worker holds its
//! request and no hand-back is on its way, and a stale hand-back can never make the loop hand
//! over a second request while one is with a worker. The tests below check this, and every
//! other property the loop relies on, over every interleaving of a loop and two workers.
//!
//! Not here: the sockets, the inbox, the timers (`reactor.rs`).

use std::sync::atomic::{AtomicU8, Ordering};

const IDLE: u8 = 0;
const BUSY: u8 = 1;
const WANTED: u8 = 2;

/// The hand-off state of one connection (see the module's documentation).
pub(crate) struct Handoff(AtomicU8);

impl Handoff {
    /// A new connection: the loop's.
    pub(crate) fn new() -> Handoff {
        Handoff(AtomicU8::new(IDLE))
    }

    /// The loop, on an `IDLE` connection: a worker gets its next request. `pending`: input or
    /// an end of stream already waits behind it, so the worker must hand the connection back.
    pub(crate) fn hand_over(&self, pending: bool) {
        debug_assert!(self.is_idle(), "a second request handed over");
        let state = if pending { WANTED } else { BUSY };
        self.0.store(state, Ordering::Release);
    }

    /// The loop: input or an end of stream arrived. If a worker holds the request and would
    /// not hand the connection back, it now must.
    pub(crate) fn want(&self) {
        let _ = self
            .0
            .compare_exchange(BUSY, WANTED, Ordering::AcqRel, Ordering::Acquire);
    }

    /// A worker whose answer is out and that needs nothing of the loop: the connection is the
    /// loop's again. True when the loop wants it back: the worker must then hand it back
    /// through the loop's inbox (and the state stays `WANTED` until the loop takes it).
    pub(crate) fn finish(&self) -> bool {
        self.0
            .compare_exchange(BUSY, IDLE, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    }

    /// The loop, on a hand-back from a worker: the connection is the loop's again.
    pub(crate) fn take_back(&self) {
        self.0.store(IDLE, Ordering::Release);
    }

    /// Whether the loop may parse and hand over the next request.
    pub(crate) fn is_idle(&self) -> bool {
        self.0.load(Ordering::Acquire) == IDLE
    }
}

#[cfg(test)]
mod tests {
    //! An exhaustive model check: a client that sends pipelined requests (and maybe closes),
    //! the loop (reading, handing over, taking back, writing what a worker left), and two
    //! workers (answering in full, or leaving the rest of an answer to the loop), each step
    //! one atomic action on a real [`Handoff`]. Every reachable state is visited; each must
    //! keep the invariants, and each state where nothing can move must have every request
    //! answered, in order, and the connection closed if the client closed it.

    use super::*;
    use std::collections::HashSet;

    /// Requests the client sends on the connection.
    const REQUESTS: u8 = 3;

    /// How a worker ends an answer the socket took in full.
    #[derive(Clone, Copy)]
    enum Finish {
        /// [`Handoff::finish`]: compare `BUSY` with `IDLE`; hand back when it fails.
        Real,
        /// An unsound variant: swap in `IDLE`, then hand back if it was `WANTED`.
        SwapThenHandBack,
    }

    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
    enum Worker {
        Free,
        /// Holds request `n`, not yet answered.
        Holds(u8),
        /// Wrote answer `n` in full and is about to end it.
        Wrote(u8),
        /// Must put a hand-back into the inbox.
        HandsBack,
    }

    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
    enum Back {
        /// The loop wanted the connection back.
        Wanted,
        /// The socket did not take all of answer `n`: the loop writes the rest.
        Rest(u8),
    }

    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
    enum Wire {
        Head(u8),
        Tail(u8),
    }

    #[derive(Clone, PartialEq, Eq, Hash, Debug)]
    struct World {
        handoff: u8,
        /// Requests the client has sent; whether it then closed.
        sent: u8,
        client_closed: bool,
        /// Requests the loop has read; whether it has seen the close.
        read: u8,
        saw_close: bool,
        /// Requests handed to the workers' queue; those not yet taken.
        handed: u8,
        queue: Vec<u8>,
        /// The loop checked `IDLE` and is about to hand over.
        handing_over: bool,
        workers: [Worker; 2],
        inbox: Vec<Back>,
        /// The rest of an answer the loop has to write.
        rest: Option<u8>,
        wire: Vec<Wire>,
        closed: bool,
    }

    impl World {
        fn with<T>(&mut self, action: impl FnOnce(&Handoff) -> T) -> T {
            let handoff = Handoff(AtomicU8::new(self.handoff));
            let result = action(&handoff);
            self.handoff = handoff.0.load(Ordering::SeqCst);
            result
        }

        fn outstanding(&self) -> usize {
            self.queue.len()
                + self
                    .workers
                    .iter()
                    .filter(|w| matches!(w, Worker::Holds(_) | Worker::Wrote(_)))
                    .count()
        }

        /// Every state one step away.
        fn successors(&self, finish: Finish, client_closes: bool) -> Vec<World> {
            let mut next = Vec::new();
            let mut step = |change: &dyn Fn(&mut World)| {
                let mut world = self.clone();
                change(&mut world);
                next.push(world);
            };
            // The client.
            if self.sent < REQUESTS && !self.client_closed {
                step(&|w| w.sent += 1);
            }
            if client_closes && !self.client_closed {
                step(&|w| w.client_closed = true);
            }
            // The loop.
            if !self.closed && !self.handing_over {
                // One request, or the close after the last, per read.
                if self.read < self.sent {
                    step(&|w| {
                        w.read += 1;
                        w.with(Handoff::want);
                    });
                } else if self.saw_close != self.client_closed {
                    step(&|w| {
                        w.saw_close = true;
                        w.with(Handoff::want);
                    });
                }
                if let Some(&back) = self.inbox.first() {
                    step(&|w| {
                        w.inbox.remove(0);
                        if let Back::Rest(n) = back {
                            w.rest = Some(n);
                        }
                        w.with(Handoff::take_back);
                    });
                }
                // `drive`: pending output first, then the next request or the close.
                if let Some(n) = self.rest {
                    step(&|w| {
                        w.wire.push(Wire::Tail(n));
                        w.rest = None;
                    });
                } else if self.handoff == IDLE && self.read > self.handed {
                    step(&|w| w.handing_over = w.with(Handoff::is_idle));
                } else if self.handoff == IDLE && self.saw_close {
                    step(&|w| w.closed = w.with(Handoff::is_idle));
                }
            }
            if self.handing_over {
                step(&|w| {
                    w.handed += 1;
                    w.queue.push(w.handed);
                    let pending = w.read > w.handed || w.saw_close;
                    w.with(|h| h.hand_over(pending));
                    w.handing_over = false;
                });
            }
            // The workers.
            for i in 0..2 {
                match self.workers[i] {
                    Worker::Free if !self.queue.is_empty() => step(&|w| {
                        let n = w.queue.remove(0);
                        w.workers[i] = Worker::Holds(n);
                    }),
                    Worker::Free => {}
                    Worker::Holds(n) => {
                        // The socket takes the whole answer...
                        step(&|w| {
                            w.wire.extend([Wire::Head(n), Wire::Tail(n)]);
                            w.workers[i] = Worker::Wrote(n);
                        });
                        // ... or part of it, and the rest goes back to the loop.
                        step(&|w| {
                            w.wire.push(Wire::Head(n));
                            w.inbox.push(Back::Rest(n));
                            w.workers[i] = Worker::Free;
                        });
                    }
                    Worker::Wrote(_) => step(&|w| {
                        let hand_back = match finish {
                            Finish::Real => w.with(Handoff::finish),
                            Finish::SwapThenHandBack => {
                                w.with(|h| h.0.swap(IDLE, Ordering::AcqRel)) == WANTED
                            }
                        };
                        w.workers[i] = if hand_back {
                            Worker::HandsBack
                        } else {
                            Worker::Free
                        };
                    }),
                    Worker::HandsBack => step(&|w| {
                        w.inbox.push(Back::Wanted);
                        w.workers[i] = Worker::Free;
                    }),
                }
            }
            next
        }

        /// What must hold in every reachable state. `design`: also the invariant the design
        /// rests on (`IDLE` means nobody else holds the connection), not only its consequences.
        fn check(&self, design: bool) -> Result<(), String> {
            if self.outstanding() > 1 {
                return Err("two requests of one connection are with workers".into());
            }
            let with_workers = self.outstanding() > 0
                || self.workers.iter().any(|w| *w != Worker::Free)
                || !self.inbox.is_empty();
            if design && self.handoff == IDLE && with_workers {
                return Err("IDLE while a worker holds the connection".into());
            }
            if self.closed && (with_workers || self.rest.is_some()) {
                return Err("closed before the last answer was out".into());
            }
            // Answers leave whole and in order: head 1, tail 1, head 2, ...
            for (i, part) in self.wire.iter().enumerate() {
                let n = (i / 2) as u8 + 1;
                let expected = if i % 2 == 0 {
                    Wire::Head(n)
                } else {
                    Wire::Tail(n)
                };
                if *part != expected {
                    return Err(format!("answers out of order: {:?}", self.wire));
                }
            }
            Ok(())
        }

        /// What must hold where nothing can move.
        fn check_final(&self) -> Result<(), String> {
            if self.wire.len() != 2 * usize::from(self.sent) {
                return Err(format!(
                    "stuck with {} requests sent and {:?} answered",
                    self.sent, self.wire
                ));
            }
            if self.client_closed != self.closed {
                return Err("the client closed, the connection stays open".into());
            }
            Ok(())
        }
    }

    /// Visits every state reachable from a new connection (with a client that closes after
    /// its requests, or keeps the connection open); the first violation and its state.
    fn explore(finish: Finish, client_closes: bool, design: bool) -> Result<usize, String> {
        let start = World {
            handoff: IDLE,
            sent: 0,
            client_closed: false,
            read: 0,
            saw_close: false,
            handed: 0,
            queue: Vec::new(),
            handing_over: false,
            workers: [Worker::Free; 2],
            inbox: Vec::new(),
            rest: None,
            wire: Vec::new(),
            closed: false,
        };
        let mut seen = HashSet::new();
        let mut stack = vec![start];
        while let Some(world) = stack.pop() {
            if !seen.insert(world.clone()) {
                continue;
            }
            world
                .check(design)
                .map_err(|e| format!("{e}\nin {world:#?}"))?;
            let next = world.successors(finish, client_closes);
            if next.is_empty() {
                world
                    .check_final()
                    .map_err(|e| format!("{e}\nin {world:#?}"))?;
            }
            stack.extend(next);
        }
        Ok(seen.len())
    }

    #[test]
    fn every_interleaving_of_the_loop_and_two_workers_keeps_the_connection_right() {
        for client_closes in [false, true] {
            let states =
                explore(Finish::Real, client_closes, true).unwrap_or_else(|e| panic!("{e}"));
            // Not trivially small: pipelining, partial writes and closes interleave.
            eprintln!("{states} states (the client closes: {client_closes})");
            assert!(states > 100, "only {states} states");
        }
    }

    /// The checker finds the race of the unsound variant: a worker sets `IDLE` before its
    /// hand-back reaches the loop, the loop hands over the next request meanwhile, and the
    /// stale hand-back then makes it hand over a third while the second is not yet answered,
    /// so two answers mix on the wire.
    #[test]
    fn the_checker_finds_a_hand_back_that_races_the_next_hand_over() {
        let found = explore(Finish::SwapThenHandBack, false, true).expect_err("the race is found");
        assert!(found.starts_with("IDLE while"), "{found}");
        // And what it leads to, for the checks of consequences alone.
        let found = explore(Finish::SwapThenHandBack, false, false).expect_err("the race is found");
        assert!(
            found.starts_with("two requests") || found.starts_with("answers out of order"),
            "{found}"
        );
    }

    #[test]
    fn the_states_one_by_one() {
        let handoff = Handoff::new();
        assert!(handoff.is_idle());
        // Nothing waits: the worker ends the exchange alone.
        handoff.hand_over(false);
        assert!(!handoff.is_idle());
        assert!(!handoff.finish());
        assert!(handoff.is_idle());
        // Input arrives while the worker answers: it must hand back, and the connection stays
        // the worker's side until the loop takes it.
        handoff.hand_over(false);
        handoff.want();
        assert!(handoff.finish());
        assert!(!handoff.is_idle());
        handoff.take_back();
        assert!(handoff.is_idle());
        // Input already waiting at the hand-over.
        handoff.hand_over(true);
        assert!(handoff.finish());
        handoff.take_back();
        // `want` on an idle connection changes nothing.
        handoff.want();
        assert!(handoff.is_idle());
    }
}
