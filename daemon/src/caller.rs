//! Who asks: [`Caller`] names the client behind a request (one connection of a program, a
//! workstation over the network, or fsed's own batcher) so that card work can be shared in
//! turns per client and rights checked per workstation. It depends on nothing of fsed's.

use std::sync::atomic::{AtomicU64, Ordering};

/// One client of fsed: one API connection, or one of fsed's own tasks. Unique for the life of
/// the process; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(u64);

/// The next client id (0 is never given: it stands for no client in logs).
static NEXT: AtomicU64 = AtomicU64::new(1);

impl ClientId {
    /// A client id never given before.
    pub fn fresh() -> ClientId {
        ClientId(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// Its number, for logs and answers.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// Where a client connects from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A process on this machine, over the Unix socket (its uid checked by `access`).
    Local {
        /// The connecting process's user.
        uid: u32,
    },
    /// An enrolled workstation, over mutual TLS.
    Workstation {
        /// The name it was enrolled under.
        name: String,
        /// SHA-256 of its certificate (DER), hex.
        fingerprint: String,
    },
    /// fsed itself (the batcher signing lots, a test).
    Internal(&'static str),
}

/// The client behind a request, and where it connects from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The client.
    pub client: ClientId,
    /// Where it connects from.
    pub peer: Peer,
}

impl Caller {
    /// A new client of fsed's own (`what` names it in logs).
    pub fn internal(what: &'static str) -> Caller {
        Caller {
            client: ClientId::fresh(),
            peer: Peer::Internal(what),
        }
    }

    /// A new client over the local socket, running as `uid`.
    pub fn local(uid: u32) -> Caller {
        Caller {
            client: ClientId::fresh(),
            peer: Peer::Local { uid },
        }
    }

    /// How the client is named in logs and answers: `local:<uid>#<n>`, `<workstation>#<n>`,
    /// `fsed:<task>#<n>`.
    pub fn label(&self) -> String {
        let n = self.client.get();
        match &self.peer {
            Peer::Local { uid } => format!("local:{uid}#{n}"),
            Peer::Workstation { name, .. } => format!("{name}#{n}"),
            Peer::Internal(what) => format!("fsed:{what}#{n}"),
        }
    }
}

impl Default for Caller {
    /// A client of fsed's own, unnamed (tests that ask the dispatcher directly).
    fn default() -> Caller {
        Caller::internal("direct")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_is_new_and_named_by_where_it_comes_from() {
        let (a, b) = (Caller::local(1000), Caller::local(1000));
        assert_ne!(a.client, b.client);
        assert!(a.label().starts_with("local:1000#"), "{}", a.label());
        let w = Caller {
            client: ClientId::fresh(),
            peer: Peer::Workstation {
                name: "reception".into(),
                fingerprint: "ab".into(),
            },
        };
        assert!(w.label().starts_with("reception#"));
        assert!(Caller::internal("batcher")
            .label()
            .starts_with("fsed:batcher#"));
    }
}
