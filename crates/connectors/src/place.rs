//! A leg's place in the request budget's queue, which the scheduler may ask it to give up.
//!
//! The store orders legs earliest deadline first, but the service works on a bounded number at once: a leg claimed
//! while the budget is spent waits in the budget's queue holding a worker slot. A leg that arrives later with an
//! earlier deadline then waits in the store, behind nothing but the cap, and when the platform's window opens again
//! the held legs take the room it needed (a fixed window's reset hands out a minute's allowance at once). So the
//! scheduler can ask a held leg to give way while it still waits for the permit that would *begin* its work (a gate
//! read): nothing has been sent for it, so it goes back to the store as it was, and the urgent leg takes its slot.
//! A request that finishes work already begun (the write after its read) is never asked: its read was paid for.
//!
//! The worker runs a leg inside [`hold`], which installs the leg's [`Place`] as a task-local for the connector to
//! find; calls made outside it (catalog refreshes, the reconciler) have no place and cannot be asked.

use jiff::Timestamp;
use parking_lot::Mutex;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Notify;

tokio::task_local! {
    static PLACE: Arc<Place>;
}

/// One claimed leg's standing: the deadline it is ordered by, and whether it waits to begin work right now.
#[derive(Debug)]
pub struct Place {
    deadline: Option<Timestamp>,
    state: Mutex<State>,
    asked: Notify,
}

#[derive(Debug, Default)]
struct State {
    waiting: bool,
    give_way: bool,
}

impl Place {
    /// The place of a leg ordered by `deadline` (`None`: no deadline, after every leg with one).
    pub fn new(deadline: Option<Timestamp>) -> Arc<Self> {
        Arc::new(Self { deadline, state: Mutex::default(), asked: Notify::new() })
    }

    /// The deadline the leg is ordered by.
    pub fn deadline(&self) -> Option<Timestamp> {
        self.deadline
    }

    /// Whether the leg waits for the permit of a request that begins its work (and so may still give way).
    pub fn waiting(&self) -> bool {
        let s = self.state.lock();
        s.waiting && !s.give_way
    }

    /// Asks the leg to give way; `true` if it was waiting, so that its request will come back unsent.
    pub fn give_way(&self) -> bool {
        let mut s = self.state.lock();
        if !s.waiting || s.give_way {
            return false;
        }
        s.give_way = true;
        drop(s);
        self.asked.notify_waiters();
        true
    }

    /// Whether `other` should go before this leg: its deadline is earlier (no deadline is the latest of all).
    pub fn yields_to(&self, other: Option<Timestamp>) -> bool {
        match (other, self.deadline) {
            (Some(other), Some(mine)) => other < mine,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// Runs `fut` (the work on one leg) with `place` as the leg's standing for the connector.
pub async fn hold<F: Future>(place: Arc<Place>, fut: F) -> F::Output {
    PLACE.scope(place, fut).await
}

/// Awaits `permit` (the budget's permit for a request that begins a leg's work) unless the leg is asked to give way
/// first: then `None`, and the permit's waiter is dropped, so nothing is sent. Outside [`hold`] it simply awaits.
/// The connectors' call path waits this way; an adapter that queues for the platform elsewhere can too.
pub async fn unless_asked<F: Future>(permit: F) -> Option<F::Output> {
    let Ok(place) = PLACE.try_with(Arc::clone) else {
        return Some(permit.await);
    };
    place.state.lock().waiting = true;
    let out = wait(&place, permit).await;
    let mut s = place.state.lock();
    s.waiting = false;
    // Asked too late (the permit came first): the leg goes on, and the next request may be asked again.
    s.give_way = false;
    out
}

async fn wait<F: Future>(place: &Place, permit: F) -> Option<F::Output> {
    tokio::pin!(permit);
    loop {
        let asked = place.asked.notified();
        tokio::pin!(asked);
        asked.as_mut().enable();
        if place.state.lock().give_way {
            return None;
        }
        tokio::select! {
            biased;
            out = &mut permit => return Some(out),
            _ = &mut asked => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: i64) -> Option<Timestamp> {
        Some(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn earlier_deadlines_go_first_and_none_is_the_latest() {
        let place = Place::new(at(100));
        assert!(place.yields_to(at(99)));
        assert!(!place.yields_to(at(100)));
        assert!(!place.yields_to(at(101)));
        assert!(!place.yields_to(None));
        let unbounded = Place::new(None);
        assert!(unbounded.yields_to(at(1_000_000)));
        assert!(!unbounded.yields_to(None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_leg_gives_way_and_its_permit_is_never_taken() {
        let place = Place::new(at(100));
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let task = tokio::spawn(hold(place.clone(), async move { unless_asked(rx).await }));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(place.waiting());
        assert!(place.give_way());
        assert!(!place.give_way(), "asked once");
        assert!(task.await.unwrap().is_none());
        assert!(tx.send(7).is_err(), "the permit's waiter was dropped");
        assert!(!place.waiting());
    }

    #[tokio::test(start_paused = true)]
    async fn a_leg_that_is_not_waiting_cannot_be_asked() {
        let place = Place::new(at(100));
        assert!(!place.give_way());
        let out = hold(place.clone(), async { unless_asked(async { 5 }).await }).await;
        assert_eq!(out, Some(5));
        assert!(!place.give_way(), "the permit came: nothing waits");
    }

    #[tokio::test]
    async fn outside_a_held_leg_the_permit_is_simply_awaited() {
        assert_eq!(unless_asked(async { 3 }).await, Some(3));
    }
}
