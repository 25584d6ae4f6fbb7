//! Links on loopback: messages between members, and everything a stranger may try.

use super::*;

use crate::test_support::{PROMPTLY, TempDir};

/// Listeners for `n` members on free loopback ports, and their membership (one secret).
fn members(n: usize, secret: &[u8]) -> Vec<(Membership, TcpListener)> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addresses: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    listeners
        .into_iter()
        .enumerate()
        .map(|(i, listener)| {
            let membership = Membership {
                id: i as u64 + 1,
                members: addresses.clone(),
                secret: secret.to_vec(),
            };
            (membership, listener)
        })
        .collect()
}

struct Started {
    links: Links,
    stats: Arc<LinkStats>,
    inbox: Receiver<Input>,
    stop: Arc<AtomicBool>,
}

impl Drop for Started {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn start_member(membership: Membership, listener: TcpListener) -> Started {
    let (sender, inbox) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let (links, stats) = start(membership, listener, sender, stop.clone()).unwrap();
    Started {
        links,
        stats,
        inbox,
        stop,
    }
}

fn message(from: u64, to: u64, term: u64) -> Message {
    Message {
        from,
        to,
        term,
        ..Message::default()
    }
}

/// The next message delivered to `member`, within a bound.
#[track_caller]
fn next_message(member: &Started) -> Message {
    match member.inbox.recv_timeout(PROMPTLY) {
        Ok(Input::Step(message)) => *message,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Waits, bounded, until `check` holds.
#[track_caller]
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    crate::test_support::eventually(what, || check().then_some(()));
}

/// Opens a raw connection to a member's port, as a stranger would.
fn stranger(address: &str) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(PROMPTLY)).unwrap();
    stream
}

/// Whether the member closed the connection (reads end) within the bound.
fn closed_by_member(stream: &mut TcpStream) -> bool {
    let mut buffer = [0; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error) => {
                return matches!(
                    error.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                );
            }
        }
    }
}

#[test]
fn members_exchange_messages_both_ways() {
    let mut set = members(2, b"s3cret");
    let (two, two_listener) = set.pop().unwrap();
    let (one, one_listener) = set.pop().unwrap();
    let mut one = start_member(one, one_listener);
    let mut two = start_member(two, two_listener);
    one.links.send(message(1, 2, 7));
    assert_eq!(next_message(&two).term, 7);
    two.links.send(message(2, 1, 8));
    assert_eq!(next_message(&one).term, 8);
    // A message for a member that is not in the list goes nowhere.
    one.links.send(message(1, 9, 9));
    assert_eq!(one.stats.refused.load(Ordering::Relaxed), 0);
    assert_eq!(two.stats.refused.load(Ordering::Relaxed), 0);
}

#[test]
fn a_member_with_another_secret_is_refused_and_delivers_nothing() {
    let mut set = members(2, b"right");
    let (mut two, two_listener) = set.pop().unwrap();
    let (one, one_listener) = set.pop().unwrap();
    two.secret = b"wrong".to_vec();
    let one = start_member(one, one_listener);
    let mut two = start_member(two, two_listener);
    two.links.send(message(2, 1, 1));
    eventually("the wrong secret is refused", || {
        one.stats.refused.load(Ordering::Relaxed) > 0
    });
    eventually("the refusal reaches the other member", || {
        two.stats.refused_by_peer.lock().unwrap().is_some()
    });
    let reason = two.stats.refused_by_peer.lock().unwrap().clone().unwrap();
    assert_eq!(reason, "refused: refused", "a stranger learns nothing");
    assert!(one.inbox.try_recv().is_err());
    assert_eq!(one.stats.delivered.load(Ordering::Relaxed), 0);
}

#[test]
fn a_member_with_another_member_list_is_refused_saying_why() {
    let mut set = members(2, b"s3cret");
    let (mut two, two_listener) = set.pop().unwrap();
    let (one, one_listener) = set.pop().unwrap();
    two.members.push("10.0.0.3:7001".into());
    let one = start_member(one, one_listener);
    let mut two = start_member(two, two_listener);
    two.links.send(message(2, 1, 1));
    eventually("the refusal reaches the other member", || {
        two.stats.refused_by_peer.lock().unwrap().is_some()
    });
    let reason = two.stats.refused_by_peer.lock().unwrap().clone().unwrap();
    assert!(reason.contains("different member list"), "{reason}");
    assert_eq!(one.stats.delivered.load(Ordering::Relaxed), 0);
}

#[test]
fn garbage_huge_frames_and_forged_senders_close_the_connection_and_the_member_serves_on() {
    let mut set = members(3, b"s3cret");
    let (three, _) = set.pop().unwrap();
    let (two, two_listener) = set.pop().unwrap();
    let (one, one_listener) = set.pop().unwrap();
    let address = one.members[0].clone();
    let one_started = start_member(one, one_listener);

    // Garbage instead of a hello.
    let mut garbage = stranger(&address);
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert!(closed_by_member(&mut garbage));
    // A frame far above the handshake's bound.
    let mut huge = stranger(&address);
    huge.write_all(&u32::MAX.to_le_bytes()).unwrap();
    assert!(closed_by_member(&mut huge));
    // Silence: cut off at the handshake's timeout.
    let mut silent = stranger(&address);
    assert!(closed_by_member(&mut silent));

    // A member that authenticated as 3 but sends a message from 2 is cut off.
    let mut forger = stranger(&address);
    let challenge = match read_frame(&mut forger, MAX_HANDSHAKE_FRAME).unwrap() {
        Some((CHALLENGE, challenge)) => challenge,
        other => panic!("{other:?}"),
    };
    let hello = Hello::new(&three, 1, &challenge);
    write_frame(&mut forger, HELLO, &hello.encode()).unwrap();
    assert!(matches!(
        read_frame(&mut forger, MAX_HANDSHAKE_FRAME),
        Ok(Some((ACCEPT, _)))
    ));
    write_frame(&mut forger, MESSAGE, &message(2, 1, 5).encode_to_vec()).unwrap();
    assert!(closed_by_member(&mut forger));
    assert!(one_started.inbox.try_recv().is_err());
    eventually("four connections counted as refused", || {
        one_started.stats.refused.load(Ordering::Relaxed) == 4
    });

    // The member still serves the others.
    let mut two_started = start_member(two, two_listener);
    two_started.links.send(message(2, 1, 6));
    assert_eq!(next_message(&one_started).term, 6);
}

#[test]
fn a_stranger_without_the_secret_cannot_pass_with_a_replayed_hello() {
    let mut set = members(2, b"s3cret");
    let (two, _) = set.pop().unwrap();
    let (one, one_listener) = set.pop().unwrap();
    let address = one.members[0].clone();
    let one_started = start_member(one, one_listener);
    // A hello recorded for one challenge does not pass another.
    let old = Hello::new(&two, 1, &[0; 32]);
    let mut replay = stranger(&address);
    assert!(matches!(
        read_frame(&mut replay, MAX_HANDSHAKE_FRAME),
        Ok(Some((CHALLENGE, _)))
    ));
    write_frame(&mut replay, HELLO, &old.encode()).unwrap();
    assert!(matches!(
        read_frame(&mut replay, MAX_HANDSHAKE_FRAME),
        Ok(Some((REFUSE, _)))
    ));
    assert!(closed_by_member(&mut replay));
    assert_eq!(one_started.stats.delivered.load(Ordering::Relaxed), 0);
}

#[test]
fn three_raft_members_elect_and_replicate_over_tcp() {
    use crate::node::{Committed, Machine, Node, Settings};

    #[derive(Clone, Default)]
    struct Count(Arc<Mutex<Vec<Vec<u8>>>>);
    impl Machine for Count {
        fn apply(&mut self, entry: Committed<'_>) {
            self.0.lock().unwrap().push(entry.payload.to_vec());
        }
        fn snapshot(&self) -> Vec<u8> {
            Vec::new()
        }
        fn restore(&mut self, _data: &[u8]) {}
        fn refused(&mut self, _seq: u64) {}
    }

    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new()).collect();
    let mut nodes = Vec::new();
    let mut stops = Vec::new();
    let mut journals = Vec::new();
    for ((membership, listener), dir) in members(3, b"s3cret").into_iter().zip(&dirs) {
        let (inbox, input) = mpsc::channel::<Input>();
        let stop = Arc::new(AtomicBool::new(false));
        let (links, _) = start(membership.clone(), listener, inbox.clone(), stop.clone()).unwrap();
        let settings = Settings {
            id: membership.id,
            voters: vec![1, 2, 3],
            tick: Duration::from_millis(10),
            snapshot_every: 1_000,
        };
        let journal = Count::default();
        let node = Node::start_with_inbox(&dir.0, settings, journal.clone(), links, (inbox, input))
            .unwrap();
        nodes.push(node);
        stops.push(stop);
        journals.push(journal);
    }
    let mut leader = 0;
    eventually("a leader", || {
        let leading: Vec<u64> = nodes
            .iter()
            .map(Node::status)
            .filter(|s| s.leading)
            .map(|s| s.id)
            .collect();
        leader = leading.first().copied().unwrap_or(0);
        leading.len() == 1
    });
    nodes[(leader - 1) as usize]
        .proposer()
        .propose(b"over tcp")
        .unwrap();
    for journal in &journals {
        eventually("every member applies the entry", || {
            journal.0.lock().unwrap().as_slice() == [b"over tcp".to_vec()]
        });
    }
    for node in nodes {
        node.stop().unwrap();
    }
    for stop in stops {
        stop.store(true, Ordering::Relaxed);
    }
}
