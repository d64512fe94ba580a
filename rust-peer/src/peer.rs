//! One peer: link set-up, protocol v1, logs in the original format, and exit.
//!
//! Threads: the main thread ticks (grace, settlement, deadlines, idle exit, signals);
//! one acceptor; one dialer per neighbour; per connection one reader and one writer.
//! All state sits behind one mutex; nothing blocks on a socket while holding it
//! (writers get frames through unbounded channels), so two peers forwarding to each
//! other cannot deadlock on full socket buffers.
//!
//! Link set-up (see README.md): both ends dial, both accept. The connection dialed by
//! the LOWER id is the kept one; a connection dialed by the higher id is written on
//! only when no kept connection appeared within `GRACE` (a peer that dialed once and
//! failed, like the original tool) or the kept one was closed by the other side.
//! Every connection is read until it closes; a peer shuts down its write side of a
//! connection it no longer uses, so between two of these peers nothing is lost. Frames
//! written on a connection that the other side closes before the link settled are
//! resent on the kept one; the receiver drops a frame it already got from that
//! neighbour with the same hop list. Traffic counts each frame once per direction:
//! resends and dropped duplicates are only reported on stderr.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::args::Args;
use crate::signals;
use crate::wire::{self, ReadError, ReadFrame};

/// A connection dialed by the higher id is used only after this long without one
/// dialed by the lower id (longer than the dial backoff cap, so a retrying lower
/// peer always gets there first).
const GRACE: Duration = Duration::from_millis(1000);
/// A link is settled once it has had exactly one connection, in use, for this long:
/// from then on no resend is kept and a closed link stays closed (v1 semantics).
const SETTLE: Duration = Duration::from_millis(2000);
const TICK: Duration = Duration::from_millis(50);
const DIAL_BACKOFF_START: Duration = Duration::from_millis(20);
const DIAL_BACKOFF_MAX: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an exit waits for queued frames to reach the sockets.
const DRAIN_IDLE: Duration = Duration::from_secs(2);
const DRAIN_SIGNAL: Duration = Duration::from_millis(500);
const STACK: usize = 256 * 1024;
/// A writer coalesces queued frames into one write of at most this many bytes.
const WRITE_BATCH: usize = 64 * 1024;

type Frame = Arc<[u8]>;

enum Cmd {
    Frame(Frame),
    Shutdown,
}

struct Conn {
    id: u64,
    dialed_by_lower: bool,
    opened: Instant,
    tx: Sender<Cmd>,
    stream: TcpStream,
    write_shut: bool,
    /// Frames written here while the link was unsettled: resent if the other side closes.
    written: Vec<Frame>,
}

/// A frame waiting for a usable connection; `counted` once it was counted as traffic.
struct Out {
    frame: Frame,
    counted: bool,
}

struct Link {
    nbr: u32,
    addr: String,
    conns: Vec<Conn>,
    active: Option<u64>,
    ever_up: bool,
    settled: bool,
    /// No connection will be used again: settled and lost, or the deadline passed.
    closed: bool,
    /// A connection dialed by the lower id was closed by the other side: use any other at once.
    promote_now: bool,
    single_since: Option<Instant>,
    /// When the connection in use was chosen.
    active_since: Instant,
    dialed_once: bool,
    pending: Vec<Out>,
    seen: HashSet<Vec<u32>>,
    frames_in: u64,
    bytes_in: u64,
    frames_out: u64,
    bytes_out: u64,
}

#[derive(Default)]
struct Stats {
    received: u64,
    duplicates: u64,
    undelivered: u64,
    errors: u64,
    rewritten: u64,
    noncanonical: u64,
}

struct State {
    links: BTreeMap<u32, Link>,
    next_conn: u64,
    log: File,
    last_frame: Option<Instant>,
    exiting: bool,
    stats: Stats,
}

struct Peer {
    me: u32,
    started: Instant,
    deadline: Instant,
    queued: Arc<AtomicUsize>,
    /// Frames written again after the connection they went out on was closed.
    resent: AtomicU64,
    state: Mutex<State>,
}

/// Run the peer until it idles out or is signalled; `Err` is a one-line message.
pub fn run(args: Args) -> Result<(), String> {
    fs::create_dir_all(&args.logs).map_err(|e| format!("cannot create {}: {e}", args.logs.display()))?;
    let traffic = args.logs.join(format!("{}.traffic.txt", args.id));
    if traffic.exists() {
        return Err(format!(
            "{} exists: peer {} already finished a run in this directory; use a fresh --logs directory",
            traffic.display(),
            args.id
        ));
    }
    let log_path = args.logs.join(format!("{}.txt", args.id));
    // Append, never truncate: a restarted peer keeps what its first incarnation logged.
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
    let listener =
        TcpListener::bind(args.listen.as_str()).map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    signals::install();

    let started = Instant::now();
    let links = args.peers.iter().map(|(&nbr, addr)| (nbr, Link::new(nbr, addr.clone()))).collect();
    let peer = Arc::new(Peer {
        me: args.id,
        started,
        deadline: started + args.link_deadline,
        queued: Arc::new(AtomicUsize::new(0)),
        resent: AtomicU64::new(0),
        state: Mutex::new(State {
            links,
            next_conn: 0,
            log,
            last_frame: None,
            exiting: false,
            stats: Stats::default(),
        }),
    });
    let p = Arc::clone(&peer);
    spawn("accept", move || p.accept_loop(listener));
    for &nbr in args.peers.keys() {
        let p = Arc::clone(&peer);
        spawn("dial", move || p.dial_loop(nbr));
    }
    let reason = peer.main_loop(args.idle);
    peer.finish(reason, &traffic)
}

fn spawn<F: FnOnce() + Send + 'static>(name: &str, f: F) {
    thread::Builder::new().name(name.to_string()).stack_size(STACK).spawn(f).expect("cannot start a thread");
}

impl Link {
    fn new(nbr: u32, addr: String) -> Self {
        Link {
            nbr,
            addr,
            conns: Vec::new(),
            active: None,
            ever_up: false,
            settled: false,
            closed: false,
            promote_now: false,
            single_since: None,
            active_since: Instant::now(),
            dialed_once: false,
            pending: Vec::new(),
            seen: HashSet::new(),
            frames_in: 0,
            bytes_in: 0,
            frames_out: 0,
            bytes_out: 0,
        }
    }

    fn conn_mut(&mut self, id: u64) -> Option<&mut Conn> {
        self.conns.iter_mut().find(|c| c.id == id)
    }
}

impl Peer {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking thread must not take the whole peer down with a poisoned lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn say(&self, text: &str) {
        eprintln!("p2p-peer-rs {}: {text}", self.me);
    }

    /// One stderr line at the peer's first dial attempt, with the wall clock (Unix seconds):
    /// bench/peer_start.py measures container start to first dial from it. The original-format
    /// logs are untouched; there is no per-dial output otherwise.
    fn note_first_dial(&self, nbr: u32) {
        static FIRST_DIAL: Once = Once::new();
        FIRST_DIAL.call_once(|| {
            let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            self.say(&format!("first dial at {}.{:06} (unix time), to {nbr}", t.as_secs(), t.subsec_micros()));
        });
    }

    // ---- sending -----------------------------------------------------------

    /// Hand a frame to a link: its connection in use, its pending queue, or nowhere.
    fn send(&self, st: &mut State, nbr: u32, out: Out) {
        let link = st.links.get_mut(&nbr).expect("known link");
        if link.closed {
            st.stats.undelivered += 1;
            return;
        }
        match link.active {
            Some(id) => self.write_on(link, id, out),
            None => link.pending.push(out),
        }
    }

    fn write_on(&self, link: &mut Link, conn_id: u64, out: Out) {
        if out.counted {
            self.resent.fetch_add(1, Ordering::SeqCst);
        } else {
            link.frames_out += 1;
            link.bytes_out += out.frame.len() as u64;
        }
        let settled = link.settled;
        let conn = link.conn_mut(conn_id).expect("active connection");
        if !settled {
            conn.written.push(Arc::clone(&out.frame));
        }
        self.queued.fetch_add(1, Ordering::SeqCst);
        if conn.tx.send(Cmd::Frame(out.frame)).is_err() {
            // The writer ended on an error: the reader sees the close and resends.
            self.queued.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Choose the connection to write on, retire redundant ones, settle the link.
    fn reconcile(&self, st: &mut State, nbr: u32, now: Instant) {
        let link = st.links.get_mut(&nbr).expect("known link");
        let usable = |c: &&Conn| !c.write_shut;
        let choice = if link.closed {
            None
        } else {
            let kept = link.conns.iter().filter(usable).find(|c| c.dialed_by_lower);
            let promote = link.promote_now;
            kept.or_else(|| link.conns.iter().filter(usable).find(|c| promote || now - c.opened >= GRACE)).map(|c| c.id)
        };
        let mut authored = false;
        if choice != link.active {
            link.active = choice;
            link.active_since = now;
            if let Some(id) = choice {
                for out in std::mem::take(&mut link.pending) {
                    self.write_on(link, id, out);
                }
                if !link.ever_up {
                    link.ever_up = true;
                    authored = true;
                }
            }
        }
        // Retire what is not in use: a kept connection makes every other redundant; a
        // promoted one only other higher-dialed ones (a kept one may still come). Not at
        // once: a peer like the original tool may close the one we use (it keeps the first
        // connection it registered), and then we need the other still open.
        let active_is_kept =
            link.active.and_then(|id| link.conns.iter().find(|c| c.id == id)).map(|c| c.dialed_by_lower);
        let in_use_long_enough = now - link.active_since >= GRACE;
        for c in link.conns.iter_mut() {
            let retire = match active_is_kept {
                _ if link.closed => true,
                Some(kept) => in_use_long_enough && Some(c.id) != link.active && (kept || !c.dialed_by_lower),
                None => false,
            };
            if retire && !c.write_shut {
                c.write_shut = true;
                let _ = c.tx.send(Cmd::Shutdown);
            }
        }
        if !link.settled {
            if link.active.is_some() && link.conns.len() == 1 {
                let since = *link.single_since.get_or_insert(now);
                if now - since >= SETTLE {
                    link.settled = true;
                    for c in link.conns.iter_mut() {
                        c.written = Vec::new();
                    }
                }
            } else {
                link.single_since = None;
            }
        }
        if authored {
            let own = wire::encode_frame(&wire::encode_payload(self.me, &[self.me]));
            self.send(st, nbr, Out { frame: own.into(), counted: false });
        }
    }

    // ---- connections ---------------------------------------------------------

    /// Register a connection whose handshake is done; returns its id, or None when exiting.
    fn register(&self, nbr: u32, stream: &TcpStream, dialed_by_lower: bool) -> Option<u64> {
        let write_half = stream.try_clone().ok()?;
        let control = stream.try_clone().ok()?;
        let (tx, rx) = mpsc::channel();
        let mut st = self.lock();
        if st.exiting {
            return None;
        }
        st.next_conn += 1;
        let id = st.next_conn;
        let link = st.links.get_mut(&nbr).expect("known link");
        link.conns.push(Conn {
            id,
            dialed_by_lower,
            opened: Instant::now(),
            tx,
            stream: control,
            write_shut: false,
            written: Vec::new(),
        });
        let queued = Arc::clone(&self.queued);
        spawn("write", move || writer(write_half, rx, &queued));
        self.reconcile(&mut st, nbr, Instant::now());
        Some(id)
    }

    /// The other side closed (or broke) a connection: stop using it, resend what it
    /// may have lost while the link was unsettled.
    fn on_closed(&self, nbr: u32, conn_id: u64, by_error: bool) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let link = st.links.get_mut(&nbr).expect("known link");
        let Some(pos) = link.conns.iter().position(|c| c.id == conn_id) else { return };
        let conn = link.conns.remove(pos);
        if !conn.write_shut {
            let _ = conn.tx.send(Cmd::Shutdown);
        }
        if by_error {
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
        if link.active == Some(conn_id) {
            link.active = None;
        }
        if conn.dialed_by_lower && !link.settled {
            link.promote_now = true;
        }
        if !link.settled && !link.closed {
            for frame in conn.written {
                link.pending.push(Out { frame, counted: true });
            }
        }
        if link.settled && link.active.is_none() {
            link.closed = true;
            st.stats.undelivered += link.pending.len() as u64;
            link.pending.clear();
        }
        self.reconcile(st, nbr, Instant::now());
    }

    fn protocol_error(&self, nbr: Option<u32>, err: &str) {
        self.lock().stats.errors += 1;
        match nbr {
            Some(n) => self.say(&format!("link {n}: protocol error: {err}; dropping that connection")),
            None => self.say(&format!("connection: protocol error: {err}; dropping it")),
        }
    }

    fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        for stream in listener.incoming() {
            match stream {
                Ok(s) => {
                    let p = Arc::clone(&self);
                    spawn("read", move || p.serve_accepted(s));
                }
                Err(e) => {
                    self.say(&format!("accept failed: {e}"));
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    fn serve_accepted(self: Arc<Self>, mut s: TcpStream) {
        let _ = s.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
        let mut hs = [0u8; 4];
        match wire::read_full(&mut s, &mut hs) {
            Ok(4) => {}
            Ok(0) => return, // gone before a byte: a dialer that gave up, not an error
            Ok(n) => return self.protocol_error(None, &format!("no_handshake: EOF after {n} of 4 bytes")),
            Err(e) => return self.protocol_error(None, &format!("no_handshake: {e}")),
        }
        let nbr = u32::from_be_bytes(hs);
        if !self.lock().links.contains_key(&nbr) {
            let _ = s.shutdown(Shutdown::Both);
            return self.protocol_error(None, &format!("not_neighbour: handshake from id {nbr}"));
        }
        let _ = s.set_read_timeout(None);
        let _ = s.set_nodelay(true);
        if let Some(id) = self.register(nbr, &s, nbr < self.me) {
            self.read_loop(nbr, id, s);
        }
    }

    fn dial_loop(self: Arc<Self>, nbr: u32) {
        let mut delay = DIAL_BACKOFF_START;
        loop {
            let (addr, need) = {
                let st = self.lock();
                let link = &st.links[&nbr];
                if st.exiting || link.closed || link.settled {
                    return;
                }
                // The higher id dials until its first success; the lower one (whose
                // connection is the kept one) dials again while the link has none.
                if link.dialed_once && nbr < self.me {
                    return;
                }
                (link.addr.clone(), link.conns.is_empty())
            };
            if Instant::now() >= self.deadline {
                return;
            }
            if !need {
                thread::sleep(TICK);
                continue;
            }
            self.note_first_dial(nbr);
            match dial(&addr, self.me) {
                Ok(s) => {
                    self.lock().links.get_mut(&nbr).expect("known link").dialed_once = true;
                    delay = DIAL_BACKOFF_START;
                    if let Some(id) = self.register(nbr, &s, self.me < nbr) {
                        let p = Arc::clone(&self);
                        spawn("read", move || p.read_loop(nbr, id, s));
                    }
                }
                Err(_) => {
                    thread::sleep(delay);
                    delay = (delay * 2).min(DIAL_BACKOFF_MAX);
                }
            }
        }
    }

    fn read_loop(&self, nbr: u32, conn_id: u64, mut s: TcpStream) {
        loop {
            match wire::read_frame(&mut s) {
                Ok(ReadFrame::Frame(payload)) => {
                    if let Err(e) = self.receive(nbr, conn_id, &payload) {
                        self.protocol_error(Some(nbr), &e);
                        return self.on_closed(nbr, conn_id, true);
                    }
                }
                Ok(ReadFrame::Eof) => return self.on_closed(nbr, conn_id, false),
                Err(ReadError::Protocol(e)) => {
                    self.protocol_error(Some(nbr), &e.to_string());
                    return self.on_closed(nbr, conn_id, true);
                }
                Err(ReadError::Io(_)) => return self.on_closed(nbr, conn_id, true),
            }
        }
    }

    /// One frame from `nbr`: validate, drop a resend, log, forward.
    fn receive(&self, nbr: u32, conn_id: u64, payload: &[u8]) -> Result<(), String> {
        let msg = wire::parse_payload(payload).map_err(|e| e.to_string())?;
        if msg.hops.last() != Some(&nbr) {
            return Err(format!("bad_hops: last hop of {:?} is not the sender {nbr}", msg.hops));
        }
        if msg.hops.contains(&self.me) {
            return Err(format!("bad_hops: {:?} already holds this peer", msg.hops));
        }
        let mut st = self.lock();
        if st.exiting {
            return Ok(());
        }
        let link = st.links.get_mut(&nbr).expect("known link");
        if link.seen.contains(&msg.hops) {
            st.stats.duplicates += 1;
            return Ok(());
        }
        // Only a frame that may come again needs remembering: one received before the
        // link settled, or on a connection other than the one in use.
        if !link.settled || link.active != Some(conn_id) {
            link.seen.insert(msg.hops.clone());
        }
        link.frames_in += 1;
        link.bytes_in += 4 + payload.len() as u64;
        st.stats.received += 1;
        st.last_frame = Some(Instant::now());
        if !wire::is_canonical(payload, &msg) {
            st.stats.noncanonical += 1;
        }
        // The wire bytes, unless a newline inside them would break the one-line record.
        let mut line = if payload.contains(&b'\n') || payload.contains(&b'\r') {
            st.stats.rewritten += 1;
            wire::encode_payload(msg.author, &msg.hops)
        } else {
            payload.to_vec()
        };
        line.push(b'\n');
        // Unbuffered and before any forward: a killed peer's log holds what it forwarded.
        if let Err(e) = st.log.write_all(&line) {
            self.say(&format!("cannot write the message log: {e}"));
        }
        let mut hops = msg.hops;
        hops.push(self.me);
        let frame: Frame = wire::encode_frame(&wire::encode_payload(msg.author, &hops)).into();
        let targets: Vec<u32> = st.links.keys().copied().filter(|n| !hops.contains(n)).collect();
        for t in targets {
            self.send(&mut st, t, Out { frame: Arc::clone(&frame), counted: false });
        }
        Ok(())
    }

    // ---- lifetime --------------------------------------------------------------

    /// Tick until idle or signalled; returns the exit reason.
    fn main_loop(&self, idle: Duration) -> &'static str {
        let mut ready_at: Option<Instant> = None;
        loop {
            thread::sleep(TICK);
            if signals::stop_requested() {
                return "signal";
            }
            let now = Instant::now();
            let mut st = self.lock();
            let nbrs: Vec<u32> = st.links.keys().copied().collect();
            for nbr in nbrs {
                self.reconcile(&mut st, nbr, now);
                let link = st.links.get_mut(&nbr).expect("known link");
                if !link.closed && link.active.is_none() && now >= self.deadline {
                    link.closed = true;
                    let lost = link.pending.len() as u64;
                    link.pending.clear();
                    if !link.ever_up {
                        self.say(&format!("link {nbr}: never came up before the link deadline ({})", link.addr));
                    }
                    st.stats.undelivered += lost;
                    self.reconcile(&mut st, nbr, now);
                }
            }
            let ready = st.links.values().all(|l| l.ever_up || l.closed);
            if ready && ready_at.is_none() {
                ready_at = Some(now);
            }
            if let Some(r) = ready_at {
                let since = st.last_frame.map_or(r, |f| f.max(r));
                if now - since >= idle {
                    return "idle";
                }
            }
        }
    }

    /// Drain the writers, write the traffic file, report on stderr.
    fn finish(&self, reason: &str, traffic: &Path) -> Result<(), String> {
        {
            let mut st = self.lock();
            st.exiting = true;
            for link in st.links.values_mut() {
                for c in link.conns.iter_mut().filter(|c| !c.write_shut) {
                    c.write_shut = true;
                    let _ = c.tx.send(Cmd::Shutdown);
                }
            }
        }
        let budget = if reason == "signal" { DRAIN_SIGNAL } else { DRAIN_IDLE };
        let t0 = Instant::now();
        while self.queued.load(Ordering::SeqCst) > 0 && t0.elapsed() < budget {
            thread::sleep(Duration::from_millis(5));
        }
        // Hold the lock to the end: no reader logs or counts anything after the snapshot.
        let st = self.lock();
        write_traffic(&st, traffic).map_err(|e| format!("cannot write {}: {e}", traffic.display()))?;
        let unsent = self.queued.load(Ordering::SeqCst);
        let up = st.links.values().filter(|l| l.ever_up).count();
        let s = &st.stats;
        self.say(&format!(
            "exit ({reason}) after {:.1} s: received {} (duplicates dropped {}), sent {}, resent {}, \
             undelivered {}, unsent at exit {unsent}, protocol errors {}, non-compact frames {} (log lines rewritten {}), links up {up}/{}",
            self.started.elapsed().as_secs_f64(),
            s.received,
            s.duplicates,
            st.links.values().map(|l| l.frames_out).sum::<u64>(),
            self.resent.load(Ordering::SeqCst),
            s.undelivered,
            s.errors,
            s.noncanonical,
            s.rewritten,
            st.links.len(),
        ));
        let _ = io::stderr().flush();
        for link in st.links.values() {
            for c in &link.conns {
                let _ = c.stream.shutdown(Shutdown::Both);
            }
        }
        // Exit with the lock held (readers stay blocked); the OS closes the sockets.
        std::process::exit(0);
    }
}

/// `<peer>; <in_bytes>; <out_bytes>` per neighbour that exchanged a frame (original format).
fn write_traffic(st: &State, path: &Path) -> io::Result<()> {
    let mut text = String::new();
    for l in st.links.values().filter(|l| l.frames_in + l.frames_out > 0) {
        text.push_str(&format!("{}; {}; {}\n", l.nbr, l.bytes_in, l.bytes_out));
    }
    let tmp: PathBuf = path.with_extension("txt.tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)
}

/// Resolve (again at every attempt: a container name may appear late) and connect,
/// then send the handshake.
fn dial(addr: &str, me: u32) -> io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{addr} resolves to nothing"));
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(mut s) => {
                s.set_nodelay(true)?;
                s.write_all(&wire::encode_handshake(me))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Write queued frames, coalescing what is already queued; stop at `Shutdown`.
fn writer(mut s: TcpStream, rx: Receiver<Cmd>, counter: &AtomicUsize) {
    let mut buf: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
    let mut broken = false;
    while let Ok(first) = rx.recv() {
        let mut stop = false;
        let mut frames = 0;
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Cmd::Frame(f) => {
                    buf.extend_from_slice(&f);
                    frames += 1;
                }
                Cmd::Shutdown => {
                    stop = true;
                    break;
                }
            }
            if buf.len() < WRITE_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !broken && !buf.is_empty() && s.write_all(&buf).is_err() {
            broken = true; // keep draining the queue so the counter stays right
        }
        buf.clear();
        counter.fetch_sub(frames, Ordering::SeqCst);
        if stop {
            let _ = s.shutdown(Shutdown::Write);
            break;
        }
    }
    // Anything still queued after the shutdown will never be written.
    let mut left = 0;
    while let Ok(cmd) = rx.try_recv() {
        if matches!(cmd, Cmd::Frame(_)) {
            left += 1;
        }
    }
    counter.fetch_sub(left, Ordering::SeqCst);
}
