//! Waits that end when they should, to the tens of microseconds.
//!
//! tokio's timer counts in whole milliseconds: a sleep's deadline is
//! rounded up to the next tick, and a runtime parked in `epoll_wait` (also
//! in milliseconds) wakes up to another tick late. A receiver meant to
//! answer after 20 ms answered after 21.3 ms on average, which made every
//! figure measured against "20 ms" about 6% worse than Herald's own share
//! of it. One thread sleeps on the operating system's clock until the
//! earliest deadline and wakes the task waiting for it.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    sync::{
        OnceLock,
        mpsc::{self, RecvTimeoutError},
    },
    time::Instant,
};

use tokio::sync::oneshot;

/// A wait asked of the timer thread.
type Wake = (Instant, oneshot::Sender<()>);

/// Waits until `deadline` (returns at once if it has passed).
pub async fn sleep_until(deadline: Instant) {
    if deadline <= Instant::now() {
        return;
    }
    let (done, wait) = oneshot::channel();
    if timer().send((deadline, done)).is_ok() {
        // The timer thread lives as long as the process.
        let _ = wait.await;
    }
}

/// The timer thread's inbox, started on first use.
fn timer() -> &'static mpsc::Sender<Wake> {
    static TIMER: OnceLock<mpsc::Sender<Wake>> = OnceLock::new();
    TIMER.get_or_init(|| {
        let (sender, inbox) = mpsc::channel();
        std::thread::Builder::new()
            .name("precise-timer".into())
            .spawn(move || run(&inbox))
            .expect("start the timer thread");
        sender
    })
}

/// Keeps the waits in deadline order and ends each at its deadline.
fn run(inbox: &mpsc::Receiver<Wake>) {
    // Ordered by deadline, then by arrival (the sequence number).
    let mut due: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut waiting: HashMap<u64, oneshot::Sender<()>> = HashMap::new();
    let mut sequence = 0_u64;
    loop {
        let now = Instant::now();
        while let Some(&Reverse((deadline, number))) = due.peek() {
            if deadline > now {
                break;
            }
            due.pop();
            if let Some(done) = waiting.remove(&number) {
                // The waiting task may have gone away.
                let _ = done.send(());
            }
        }
        let next = match due.peek() {
            Some(&Reverse((deadline, _))) => inbox.recv_timeout(deadline - now),
            None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok((deadline, done)) => {
                sequence += 1;
                due.push(Reverse((deadline, sequence)));
                waiting.insert(sequence, done);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn no_wait_ends_before_its_deadline() {
        let start = Instant::now();
        let late = tokio::spawn(sleep_until(start + Duration::from_millis(30)));
        let early = start + Duration::from_millis(10);
        sleep_until(early).await;
        assert!(Instant::now() >= early);
        late.await.expect("the late wait");
        assert!(Instant::now() >= start + Duration::from_millis(30));
    }
}
