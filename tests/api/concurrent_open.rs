//! Publishers racing to open the same path: exactly one wins, the others are
//! told the path is taken, and the winner is the one subscribers reach.

use crate::common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;
use notif::Publisher;

#[test]
fn of_many_simultaneous_opens_on_one_path_exactly_one_succeeds() {
    const CONTENDERS: usize = 8;
    const ROUNDS: usize = 200;
    let dir = TempDir::new("racing_opens");
    for round in 0..ROUNDS {
        let barrier = Arc::new(Barrier::new(CONTENDERS));
        let contenders: Vec<_> = (0..CONTENDERS)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                let path = dir.socket();
                std::thread::spawn(move || {
                    barrier.wait();
                    Publisher::open(path)
                })
            })
            .collect();
        let results: Vec<_> = contenders.into_iter().map(|c| c.join().unwrap()).collect();
        let mut winners: Vec<Publisher> = Vec::new();
        for result in results {
            match result {
                Ok(publisher) => winners.push(publisher),
                Err(error) => assert_eq!(error.errno(), libc::EADDRINUSE, "round {round}: {error}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: {} publishers each believe they own the path",
            winners.len()
        );
        let winner = winners.pop().unwrap();
        // The losers probed the path with a connection each, which the winner
        // may accept late and count for a moment: rather than trust a count,
        // emit until our subscriber has a line, which proves the winner is the
        // one at the path.
        let mut subscriber = RawReader::connect(dir.socket());
        subscriber.set_read_timeout(Duration::from_millis(50));
        let reached = wait_for(
            || {
                winner.emit(b"{\"round\":1}").unwrap();
                matches!(subscriber.try_line(), Ok(Some(line)) if line == b"{\"round\":1}")
            },
            Duration::from_secs(20),
        );
        assert!(
            reached,
            "round {round}: a subscriber at the path never heard from the winner"
        );
        winner.close();
        // Then end of stream, after any other copies still on their way.
        subscriber.set_read_timeout(Duration::from_secs(10));
        let rest = subscriber.read_to_eof();
        assert!(
            rest.iter().all(|line| line == b"{\"round\":1}"),
            "round {round}: {rest:?}"
        );
    }
    // The temporary names used on the way are all gone.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[test]
fn the_socket_is_reachable_only_under_its_own_name_once_open_returns() {
    let (dir, publisher) = open_publisher("published_name");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![dir.socket().file_name().unwrap().to_owned()]);
    drop(publisher);
}
