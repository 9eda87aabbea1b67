//! The links of a loopback LAN: a TCP relay per (from, to, port), owned by the test, which a
//! cut of either end closes.
//!
//! A relay listens on its destination workstation's address at a port of its own and carries
//! each connection to the destination's `port` (two threads copying, one each way). A cut of
//! workstation `i` shuts down every relayed connection to or from `i` (both sides see the end
//! of the stream) and closes the listeners of its relays (a new connection is refused); a
//! restore listens again on the same addresses once neither end is cut.

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

/// One relay: where it listens, where it carries to, and its accepting thread while not cut.
struct Route {
    from: usize,
    to: usize,
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
    /// Stops the thread, which closes the listener: a connection is refused from then on.
    fn stop(self, listen: SocketAddr) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the thread out of `accept`: it sees the flag and returns, dropping the listener.
        let _ = TcpStream::connect_timeout(&listen, CONNECT_WAIT);
        let _ = self.thread.join();
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
        let listener = TcpListener::bind((self.addresses[to], 0))
            .unwrap_or_else(|e| panic!("lan: relay on {}: {e}", self.addresses[to]));
        let listen = listener.local_addr().unwrap();
        let mut route = Route {
            from,
            to,
            listen,
            target: SocketAddr::new(self.addresses[to].into(), port),
            accepting: None,
        };
        let cut = lock(&self.shared.state).cut.clone();
        if !cut[from] && !cut[to] {
            route.accepting = Some(self.accept(listener, &route));
        }
        // Else the listener is dropped here: refused until the restore listens again.
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
                acceptor.stop(route.listen);
            }
        }
    }

    /// Restores workstation `i`: its relays whose other end is not cut listen again, on the
    /// same addresses, before this returns.
    pub(super) fn restore(&self, i: usize) {
        let mut routes = lock(&self.routes);
        let cut = {
            let mut state = lock(&self.shared.state);
            state.cut[i] = false;
            state.cut.clone()
        };
        for route in routes.values_mut() {
            if route.touches(i) && !cut[route.from] && !cut[route.to] && route.accepting.is_none() {
                // std sets SO_REUSEADDR: the port of the closed listener can be taken again.
                let listener = TcpListener::bind(route.listen)
                    .unwrap_or_else(|e| panic!("lan: relay on {} again: {e}", route.listen));
                route.accepting = Some(self.accept(listener, route));
            }
        }
    }

    /// Starts the accepting thread of `route` on `listener`.
    fn accept(&self, listener: TcpListener, route: &Route) -> Acceptor {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, shared) = (stop.clone(), self.shared.clone());
        let (from, to, target) = (route.from, route.to, route.target);
        let thread = std::thread::spawn(move || {
            for client in listener.incoming() {
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
            if let Some(acceptor) = route.accepting.take() {
                acceptor.stop(route.listen);
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
