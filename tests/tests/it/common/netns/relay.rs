//! The links of a loopback LAN: a TCP relay per (from, to, port), owned by the test, which a
//! cut of either end closes.
//!
//! A relay listens on its destination workstation's address at a port of its own and carries
//! each connection to the destination's `port` (two threads copying, one each way). A cut of
//! workstation `i` shuts down every relayed connection to or from `i` (both sides see the end
//! of the stream) and shuts down the listeners of its relays (a new connection is refused); a
//! restore listens again on the same sockets once neither end is cut.
//!
//! Sockets are shut down, never merely closed: the test process forks children all the time
//! (other tests run on parallel threads), and a child holds a copy of every descriptor until
//! it execs, which would keep a closed listener listening or a relayed connection open. A
//! shutdown acts on the socket itself, whatever copies exist; and a listener kept (in the
//! closed state) keeps its port, so the restore never races another program for it: for that
//! it is bound to its port by number ([`bind_kept`]).

use std::collections::HashMap;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a relay waits for its destination to take a connection (a local port).
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// The relays of one LAN.
pub(super) struct Relays {
    addresses: Vec<Ipv4Addr>,
    shared: Arc<Shared>,
    /// Every relay made, by (from, to, port). Its lock also keeps cuts, restores and new
    /// relays one at a time.
    routes: Mutex<HashMap<(usize, usize, u16), Route>>,
}

/// What the accepting and copying threads share with the test.
struct Shared {
    state: Mutex<State>,
}

struct State {
    /// Workstations cut off, by index.
    cut: Vec<bool>,
    /// Connections being relayed, by number: their sockets, to shut down on a cut.
    links: HashMap<u64, Link>,
    next: u64,
}

/// A relayed connection: the socket to the connecting side and the one to the destination.
struct Link {
    from: usize,
    to: usize,
    sockets: [TcpStream; 2],
}

impl Link {
    fn close(&self) {
        for socket in &self.sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// One relay: its listener, where it carries to, and its accepting thread while not cut.
struct Route {
    from: usize,
    to: usize,
    listener: Arc<TcpListener>,
    listen: SocketAddr,
    target: SocketAddr,
    accepting: Option<Acceptor>,
}

impl Route {
    fn touches(&self, i: usize) -> bool {
        self.from == i || self.to == i
    }
}

/// A relay's accepting thread and the flag that stops it.
struct Acceptor {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Acceptor {
    /// Shuts `listener` down (it stops listening: a connection is refused from then on, and
    /// the ones waiting in its backlog are reset) and stops the thread, which the shutdown wakes
    /// out of `accept`.
    fn stop(self, listener: &TcpListener) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = socket2::SockRef::from(listener).shutdown(Shutdown::Both);
        let _ = self.thread.join();
    }
}

/// A listener on `ip` at a port the system hands out, bound by number: a socket bound to port 0
/// gives its port back when shut down, one bound to a number keeps it (Linux), so that it can
/// listen again on the same port.
fn bind_kept(ip: Ipv4Addr) -> TcpListener {
    let mut tries = 0;
    loop {
        let port = TcpListener::bind((ip, 0))
            .and_then(|probe| probe.local_addr())
            .unwrap_or_else(|e| panic!("lan: relay on {ip}: {e}"))
            .port();
        // The probe is closed; a forked child may still hold it until it execs, or another
        // program may take the port meanwhile: another number then.
        match TcpListener::bind((ip, port)) {
            Ok(listener) => return listener,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 100 => tries += 1,
            Err(e) => panic!("lan: relay on {ip}:{port}: {e}"),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Relays {
    /// No relay yet, no workstation cut.
    pub(super) fn new(addresses: Vec<Ipv4Addr>) -> Relays {
        let n = addresses.len();
        Relays {
            addresses,
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    cut: vec![false; n],
                    links: HashMap::new(),
                    next: 0,
                }),
            }),
            routes: Mutex::new(HashMap::new()),
        }
    }

    /// The relay from `from` to `port` of `to`, made on the first call: its address.
    pub(super) fn route(&self, from: usize, to: usize, port: u16) -> SocketAddr {
        let mut routes = lock(&self.routes);
        if let Some(route) = routes.get(&(from, to, port)) {
            return route.listen;
        }
        let listener = bind_kept(self.addresses[to]);
        let listen = listener.local_addr().unwrap();
        let mut route = Route {
            from,
            to,
            listener: Arc::new(listener),
            listen,
            target: SocketAddr::new(self.addresses[to].into(), port),
            accepting: None,
        };
        let cut = lock(&self.shared.state).cut.clone();
        if cut[from] || cut[to] {
            // Refused until the restore listens again.
            let _ = socket2::SockRef::from(&*route.listener).shutdown(Shutdown::Both);
        } else {
            route.accepting = Some(self.accept(&route));
        }
        routes.insert((from, to, port), route);
        listen
    }

    /// Cuts workstation `i`: its relayed connections shut down, its relays refusing.
    pub(super) fn cut(&self, i: usize) {
        let mut routes = lock(&self.routes);
        {
            let mut state = lock(&self.shared.state);
            state.cut[i] = true;
            state.links.retain(|_, link| {
                let touches = link.from == i || link.to == i;
                if touches {
                    link.close();
                }
                !touches
            });
        }
        for route in routes.values_mut().filter(|r| r.touches(i)) {
            if let Some(acceptor) = route.accepting.take() {
                acceptor.stop(&route.listener);
            }
        }
    }

    /// Restores workstation `i`: its relays whose other end is not cut listen again, on the
    /// same sockets, before this returns.
    pub(super) fn restore(&self, i: usize) {
        let mut routes = lock(&self.routes);
        let cut = {
            let mut state = lock(&self.shared.state);
            state.cut[i] = false;
            state.cut.clone()
        };
        for route in routes.values_mut() {
            if route.touches(i) && !cut[route.from] && !cut[route.to] && route.accepting.is_none() {
                // A shut down listener is closed but still bound to its port: it may listen again.
                socket2::SockRef::from(&*route.listener)
                    .listen(128)
                    .unwrap_or_else(|e| panic!("lan: relay on {} again: {e}", route.listen));
                route.accepting = Some(self.accept(route));
            }
        }
    }

    /// Starts the accepting thread of `route`, on its listener (listening).
    fn accept(&self, route: &Route) -> Acceptor {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, shared) = (stop.clone(), self.shared.clone());
        let (from, to, target) = (route.from, route.to, route.target);
        let listener = route.listener.clone();
        let thread = std::thread::spawn(move || {
            for client in listener.incoming() {
                // A shutdown wakes `accept` with an error; a connection that came just before
                // is dropped (the stream closes).
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                match TcpStream::connect_timeout(&target, CONNECT_WAIT) {
                    Ok(server) => relay(&shared, from, to, client, server),
                    Err(_) => {
                        let _ = client.shutdown(Shutdown::Both);
                    }
                }
            }
        });
        Acceptor { stop, thread }
    }
}

impl Drop for Relays {
    fn drop(&mut self) {
        let mut routes = lock(&self.routes);
        {
            let mut state = lock(&self.shared.state);
            for link in state.links.values() {
                link.close();
            }
            state.links.clear();
        }
        for route in routes.values_mut() {
            match route.accepting.take() {
                Some(acceptor) => acceptor.stop(&route.listener),
                None => {
                    let _ = socket2::SockRef::from(&*route.listener).shutdown(Shutdown::Both);
                }
            }
        }
    }
}

/// Carries `client` ⇄ `server` on two threads, registered so that a cut can shut it down; at
/// once shut down when an end was cut meanwhile.
fn relay(shared: &Arc<Shared>, from: usize, to: usize, client: TcpStream, server: TcpStream) {
    let clones = (|| {
        Some([
            client.try_clone().ok()?,
            server.try_clone().ok()?,
            client.try_clone().ok()?,
            server.try_clone().ok()?,
        ])
    })();
    let Some([client_out, server_out, client_kept, server_kept]) = clones else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
        return;
    };
    let link = Link {
        from,
        to,
        sockets: [client_kept, server_kept],
    };
    let id = {
        let mut state = lock(&shared.state);
        if state.cut[from] || state.cut[to] {
            link.close();
            return;
        }
        let id = state.next;
        state.next += 1;
        state.links.insert(id, link);
        id
    };
    // The second of the two copying threads to finish forgets the link (its sockets close).
    let left = Arc::new(AtomicUsize::new(2));
    for (mut input, mut output) in [(client, server_out), (server, client_out)] {
        let (shared, left) = (shared.clone(), left.clone());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut input, &mut output);
            // The end of one direction is passed on; the other goes on until its own end.
            let _ = output.shutdown(Shutdown::Write);
            if left.fetch_sub(1, Ordering::SeqCst) == 1 {
                lock(&shared.state).links.remove(&id);
            }
        });
    }
}
