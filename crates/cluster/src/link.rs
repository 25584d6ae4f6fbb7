//! Links between members: Raft messages over TCP, only between members that prove they hold
//! the cluster's secret and agree on the member list.
//!
//! Every member listens on its own address of `members` and keeps one outgoing connection to
//! each other member; a message travels on the sender's outgoing connection, so each direction
//! of a pair has its own. A connection opens with a handshake:
//!
//! 1. the accepting member sends a challenge: 32 random bytes;
//! 2. the connecting member answers with its id, the id it wants to reach, the digest of its
//!    member list and an HMAC-SHA256 over all of these and the challenge, keyed by the secret;
//! 3. the accepting member checks the MAC (in constant time), the ids and the digest, and
//!    accepts or refuses with a one-line reason (a wrong secret gets no detail).
//!
//! After that, the connecting member sends frames of prost-encoded Raft messages, each checked
//! to come from the member that authenticated and to be addressed to this one. Anything else —
//! garbage, a frame above the size bound, a wrong MAC, a stranger — closes the connection and is
//! logged; the listener goes on serving the others. The secret is never sent. What this does not
//! give is confidentiality: traffic between members is not encrypted (run members on a private
//! network, or under a VPN or TLS tunnel).
//!
//! Sending never blocks the Raft thread: each peer has a bounded queue and a thread that
//! (re)connects and writes; a message for a peer that is down or slow is dropped, and Raft sends
//! again.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use hmac::{Hmac, Mac};
use prost::Message as _;
use raft::prelude::Message;
use sha2::{Digest, Sha256};

use crate::node::{Input, Outbox};

/// The largest frame accepted from a member: a snapshot of a large state travels in one message.
pub const MAX_FRAME: usize = 64 << 20;

/// The largest frame accepted before the handshake is done, so a stranger cannot make a member
/// allocate much.
const MAX_HANDSHAKE_FRAME: usize = 256;

/// Incoming connections in their handshake at once at most; more are closed at once, so a flood
/// of strangers costs a bounded number of threads for at most the handshake's timeout.
const MAX_HANDSHAKES: usize = 64;

/// Messages queued for one peer at most; beyond, new ones are dropped.
const QUEUE: usize = 4096;

/// How long a handshake may take, and how long a connection may stay silent (the leader sends a
/// heartbeat every tick, so a silent link is a dead one).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
const SILENCE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between attempts to reach a member that is down.
const RETRY: Duration = Duration::from_millis(100);

const CHALLENGE: u8 = 1;
const HELLO: u8 = 2;
const ACCEPT: u8 = 3;
const REFUSE: u8 = 4;
const MESSAGE: u8 = 5;

type HmacSha256 = Hmac<Sha256>;

/// Who this member is among whom, and the secret they share.
#[derive(Clone)]
pub struct Membership {
    /// This member's id: its position in `members`, from 1.
    pub id: u64,
    /// The address each member listens on for the others, in id order.
    pub members: Vec<String>,
    /// The cluster's secret.
    pub secret: Vec<u8>,
}

impl Membership {
    /// The digest of the member list: two members agree on the cluster only if theirs match.
    pub fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for member in &self.members {
            hasher.update(member.as_bytes());
            hasher.update(b"\n");
        }
        hasher.finalize().into()
    }

    fn address_of(&self, id: u64) -> Option<&str> {
        let index = usize::try_from(id.checked_sub(1)?).ok()?;
        self.members.get(index).map(String::as_str)
    }
}

/// Counts of what the links did, for metrics and tests.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Incoming connections closed during or after the handshake (bad input, wrong secret,
    /// stranger, member list that differs).
    pub refused: AtomicU64,
    /// Messages delivered to the node.
    pub delivered: AtomicU64,
    /// Messages dropped because a peer's queue was full or its link down.
    pub dropped: AtomicU64,
    /// The last reason another member gave for refusing this one.
    pub refused_by_peer: Mutex<Option<String>>,
}

/// The sending side of every link: an [`Outbox`] for the node.
pub struct Links {
    queues: Vec<(u64, SyncSender<Message>)>,
    stats: Arc<LinkStats>,
}

impl Outbox for Links {
    fn send(&mut self, message: Message) {
        let Some((_, queue)) = self.queues.iter().find(|(id, _)| *id == message.to) else {
            return;
        };
        match queue.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Binds this member's address of `members`, before anything is started: a port in use is an
/// error at start, not a silent member.
pub fn bind(membership: &Membership) -> io::Result<TcpListener> {
    let address = membership.address_of(membership.id).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cluster id {} is not a position in members (1 to {})",
                membership.id,
                membership.members.len()
            ),
        )
    })?;
    TcpListener::bind(address)
}

/// Starts the links: a thread accepting the other members' connections on `listener`, handing
/// their messages to `inbox`, and one sending thread per other member. Threads end when
/// `stop` is set (checked between connections and messages) or the process ends.
pub fn start(
    membership: Membership,
    listener: TcpListener,
    inbox: Sender<Input>,
    stop: Arc<AtomicBool>,
) -> io::Result<(Links, Arc<LinkStats>)> {
    let stats = Arc::new(LinkStats::default());
    let membership = Arc::new(membership);
    {
        let (membership, stats, stop) = (membership.clone(), stats.clone(), stop.clone());
        thread::Builder::new()
            .name("raft-accept".into())
            .spawn(move || accept_loop(&listener, &membership, &inbox, &stats, &stop))?;
    }
    let mut queues = Vec::new();
    for peer in 1..=membership.members.len() as u64 {
        if peer == membership.id {
            continue;
        }
        let (queue, outgoing) = mpsc::sync_channel(QUEUE);
        let (membership, stats, stop) = (membership.clone(), stats.clone(), stop.clone());
        thread::Builder::new()
            .name(format!("raft-send-{peer}"))
            .spawn(move || send_loop(peer, &membership, &outgoing, &stats, &stop))?;
        queues.push((peer, queue));
    }
    Ok((
        Links {
            queues,
            stats: stats.clone(),
        },
        stats,
    ))
}

fn accept_loop(
    listener: &TcpListener,
    membership: &Arc<Membership>,
    inbox: &Sender<Input>,
    stats: &Arc<LinkStats>,
    stop: &Arc<AtomicBool>,
) {
    let handshakes = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(stream) = stream else { continue };
        if handshakes.load(Ordering::Relaxed) >= MAX_HANDSHAKES {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        handshakes.fetch_add(1, Ordering::Relaxed);
        let (membership, inbox, stats) = (membership.clone(), inbox.clone(), stats.clone());
        let counter = handshakes.clone();
        let peer = stream.peer_addr().ok();
        let spawned = thread::Builder::new()
            .name("raft-receive".into())
            .spawn(move || {
                let served = receive(stream, &membership, &inbox, &stats, &counter);
                if let Err(error) = served {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "Cluster link from {}: closed: {error}",
                        peer.map_or("an unknown address".to_owned(), |p| p.to_string())
                    );
                }
            });
        if spawned.is_err() {
            handshakes.fetch_sub(1, Ordering::Relaxed);
            log::error!("Cluster link: cannot start a thread for an incoming connection");
        }
    }
}

/// Serves one incoming connection: the handshake, then messages until it closes. `Ok` when the
/// member closed it; an error for anything that ends it otherwise.
fn receive(
    stream: TcpStream,
    membership: &Membership,
    inbox: &Sender<Input>,
    stats: &LinkStats,
    handshakes: &AtomicUsize,
) -> io::Result<()> {
    let shaken = handshake(stream, membership);
    handshakes.fetch_sub(1, Ordering::Relaxed);
    let (mut stream, from) = shaken?;
    stream.set_read_timeout(Some(SILENCE_TIMEOUT))?;
    loop {
        let frame = match read_frame(&mut stream, MAX_FRAME) {
            // Followers send nothing to each other: a silent link is closed, not refused; the
            // member connects again when it has something to say.
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                log::debug!("Cluster link from member {from}: silent, closed");
                return Ok(());
            }
            result => result?,
        };
        let payload = match frame {
            Some((MESSAGE, payload)) => payload,
            Some((kind, _)) => return Err(invalid(format!("unexpected frame kind {kind}"))),
            None => return Ok(()),
        };
        let message = Message::decode(payload.as_slice())
            .map_err(|error| invalid(format!("undecodable message: {error}")))?;
        if message.from != from || message.to != membership.id {
            return Err(invalid(format!(
                "member {from} sent a message from {} to {}",
                message.from, message.to
            )));
        }
        stats.delivered.fetch_add(1, Ordering::Relaxed);
        if inbox.send(Input::Step(Box::new(message))).is_err() {
            return Ok(());
        }
    }
}

/// The accepting half of the handshake: the stream and the id of the member it authenticated.
fn handshake(mut stream: TcpStream, membership: &Membership) -> io::Result<(TcpStream, u64)> {
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let challenge: [u8; 32] = rand::random();
    write_frame(&mut stream, CHALLENGE, &challenge)?;
    let hello = match read_frame(&mut stream, MAX_HANDSHAKE_FRAME)? {
        Some((HELLO, payload)) => Hello::decode(&payload)?,
        Some((kind, _)) => return Err(invalid(format!("expected a hello, got frame kind {kind}"))),
        None => return Err(invalid("closed before the handshake".into())),
    };
    if !hello.verify(&membership.secret, &challenge) {
        // No detail for the other side: a stranger learns nothing.
        let _ = write_frame(&mut stream, REFUSE, b"refused");
        return Err(invalid(format!(
            "the handshake of member {} does not carry the cluster's secret",
            hello.from
        )));
    }
    let refusal = if hello.to != membership.id {
        Some(format!(
            "this is member {}, not {} (check the order of members)",
            membership.id, hello.to
        ))
    } else if hello.digest != membership.digest() {
        Some(format!(
            "member {} has a different member list than this member's {:?}",
            hello.from, membership.members
        ))
    } else if hello.from == membership.id
        || hello.from == 0
        || hello.from > membership.members.len() as u64
    {
        Some(format!("{} is not the id of another member", hello.from))
    } else {
        None
    };
    if let Some(reason) = refusal {
        let _ = write_frame(&mut stream, REFUSE, reason.as_bytes());
        return Err(invalid(reason));
    }
    write_frame(&mut stream, ACCEPT, &[])?;
    Ok((stream, hello.from))
}

/// Keeps the link to `peer` up and writes its queue to it.
fn send_loop(
    peer: u64,
    membership: &Membership,
    outgoing: &Receiver<Message>,
    stats: &LinkStats,
    stop: &AtomicBool,
) {
    let Some(address) = membership.address_of(peer).map(str::to_owned) else {
        return;
    };
    let mut warned = false;
    while !stop.load(Ordering::Relaxed) {
        let mut stream = match connect(&address, peer, membership) {
            Ok(stream) => {
                if warned {
                    log::info!("Cluster link to member {peer} ({address}) is up");
                }
                warned = false;
                stream
            }
            Err(error) => {
                if error.kind() == io::ErrorKind::PermissionDenied {
                    *stats
                        .refused_by_peer
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
                }
                if !warned {
                    log::warn!("Cluster link to member {peer} ({address}): {error}");
                    warned = true;
                }
                // Messages queued meanwhile are stale; Raft sends again.
                while outgoing.try_recv().is_ok() {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
                thread::sleep(RETRY);
                continue;
            }
        };
        loop {
            let message = match outgoing.recv_timeout(Duration::from_millis(200)) {
                Ok(message) => message,
                Err(mpsc::RecvTimeoutError::Timeout) if stop.load(Ordering::Relaxed) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            if write_frame(&mut stream, MESSAGE, &message.encode_to_vec()).is_err() {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
}

/// Opens a link to `peer` and passes its handshake.
fn connect(address: &str, peer: u64, membership: &Membership) -> io::Result<TcpStream> {
    let target: SocketAddr = address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| invalid(format!("{address} does not resolve")))?;
    let mut stream = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let challenge = match read_frame(&mut stream, MAX_HANDSHAKE_FRAME)? {
        Some((CHALLENGE, payload)) => payload,
        _ => return Err(invalid("no challenge from the member".into())),
    };
    let hello = Hello::new(membership, peer, &challenge);
    write_frame(&mut stream, HELLO, &hello.encode())?;
    match read_frame(&mut stream, MAX_HANDSHAKE_FRAME)? {
        Some((ACCEPT, _)) => Ok(stream),
        Some((REFUSE, reason)) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("refused: {}", String::from_utf8_lossy(&reason)),
        )),
        _ => Err(invalid("no answer to the handshake".into())),
    }
}

/// The connecting member's half of the handshake.
struct Hello {
    from: u64,
    to: u64,
    digest: [u8; 32],
    mac: [u8; 32],
}

impl Hello {
    const LEN: usize = 8 + 8 + 32 + 32;

    fn new(membership: &Membership, to: u64, challenge: &[u8]) -> Hello {
        let digest = membership.digest();
        let mac = mac(&membership.secret, challenge, membership.id, to, &digest);
        Hello {
            from: membership.id,
            to,
            digest,
            mac,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(Hello::LEN);
        bytes.extend_from_slice(&self.from.to_le_bytes());
        bytes.extend_from_slice(&self.to.to_le_bytes());
        bytes.extend_from_slice(&self.digest);
        bytes.extend_from_slice(&self.mac);
        bytes
    }

    fn decode(bytes: &[u8]) -> io::Result<Hello> {
        if bytes.len() != Hello::LEN {
            return Err(invalid(format!("a hello of {} bytes", bytes.len())));
        }
        let mut at = 0;
        let mut take = |n: usize| {
            let part = &bytes[at..at + n];
            at += n;
            part
        };
        let from = u64::from_le_bytes(take(8).try_into().unwrap_or_default());
        let to = u64::from_le_bytes(take(8).try_into().unwrap_or_default());
        let digest = take(32).try_into().unwrap_or_default();
        let mac = take(32).try_into().unwrap_or_default();
        Ok(Hello {
            from,
            to,
            digest,
            mac,
        })
    }

    /// Whether the MAC is the secret's, over this challenge: compared in constant time.
    fn verify(&self, secret: &[u8], challenge: &[u8]) -> bool {
        let Ok(mut check) = HmacSha256::new_from_slice(secret) else {
            return false;
        };
        feed(&mut check, challenge, self.from, self.to, &self.digest);
        check.verify_slice(&self.mac).is_ok()
    }
}

fn mac(secret: &[u8], challenge: &[u8], from: u64, to: u64, digest: &[u8; 32]) -> [u8; 32] {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    feed(&mut mac, challenge, from, to, digest);
    mac.finalize().into_bytes().into()
}

fn feed(mac: &mut HmacSha256, challenge: &[u8], from: u64, to: u64, digest: &[u8; 32]) {
    mac.update(b"throttle cluster link 1\n");
    mac.update(challenge);
    mac.update(&from.to_le_bytes());
    mac.update(&to.to_le_bytes());
    mac.update(digest);
}

/// `[length: u32 LE][kind: u8][payload]`, `length` counting kind and payload.
fn write_frame(stream: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    let length = payload.len() + 1;
    if length > MAX_FRAME {
        return Err(invalid(format!("a frame of {length} bytes")));
    }
    let mut frame = Vec::with_capacity(4 + length);
    frame.extend_from_slice(&(length as u32).to_le_bytes());
    frame.push(kind);
    frame.extend_from_slice(payload);
    stream.write_all(&frame)
}

/// The next frame of at most `max` bytes, or `None` if the connection closed cleanly between
/// frames.
fn read_frame(stream: &mut impl Read, max: usize) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0; 4];
    match stream.read_exact(&mut header) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let length = u32::from_le_bytes(header) as usize;
    if length == 0 || length > max {
        return Err(invalid(format!("a frame of {length} bytes")));
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    let kind = body.remove(0);
    Ok(Some((kind, body)))
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

#[cfg(test)]
mod tests;
