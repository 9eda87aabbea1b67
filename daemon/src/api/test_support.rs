//! What the API's tests share: a context over a virtual reader and a fresh queue, a line
//! asked of the dispatcher, a server with one connection.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

use super::{handle_line, serve, Conn};
use crate::cards::{Backend, Cards, VirtualReaderConfig};
use crate::context::Context;
use crate::store::Store;

/// A context over a virtual reader (no card) and a queue in `dir`.
pub(crate) fn context(dir: &tempfile::TempDir) -> Context {
    let slot = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let (cards, _thread) = Cards::start(
        Backend::Virtual(VirtualReaderConfig {
            slots: vec![fse_formats::vpcd::Endpoint::Tcp(slot)],
        }),
        None,
        Default::default(),
    )
    .unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    Context {
        cards,
        rights: Arc::new(crate::rights::Rights::new(
            Default::default(),
            None,
            store.clone(),
            None,
        )),
        store,
        batcher_wake: Arc::new(Notify::new()),
        close_now: Arc::new(AtomicBool::new(false)),
        send_now: Arc::new(AtomicBool::new(false)),
        events: crate::events::Bus::default(),
        live: Default::default(),
        doctor: Arc::new(crate::context::DoctorSetup {
            backend: crate::config::CardBackend::Virtual,
            virtual_slots: vec![slot.to_string()],
            state_dir: dir.path().to_path_buf(),
            transport: Arc::new(crate::transport::Transport::Spool(
                crate::transport::spool::Spool::open(dir.path().join("out"), dir.path().join("in"))
                    .unwrap(),
            )),
            trust_configured: false,
            attachments: Default::default(),
        }),
        network: Arc::new(
            crate::net::Network::new(&crate::config::Config {
                state_dir: dir.path().to_path_buf(),
                ..Default::default()
            })
            .unwrap(),
        ),
        remote: Default::default(),
        sign_cache: Default::default(),
        paper: Arc::new(crate::paper::Paper::new(
            &Default::default(),
            dir.path().join("paper"),
        )),
        presence: Default::default(),
    }
}

/// The reply to `line`, parsed.
pub(crate) async fn ask(ctx: &Context, line: &str) -> Value {
    let mut bytes = line.as_bytes().to_vec();
    let reply = handle_line(ctx, &mut Conn::default(), &mut bytes)
        .await
        .unwrap();
    let line = reply.to_line();
    assert_eq!(line.last(), Some(&b'\n'), "one line");
    serde_json::from_slice(&line).unwrap()
}

/// The reply line to `line`, as text (to see the id exactly as written).
pub(crate) async fn ask_text(ctx: &Context, line: &str) -> String {
    let mut bytes = line.as_bytes().to_vec();
    let reply = handle_line(ctx, &mut Conn::default(), &mut bytes)
        .await
        .unwrap();
    String::from_utf8(reply.to_line()).unwrap()
}

/// fsed's API served in `dir`, and one connection to it: the event bus, the stop, the
/// server task, the connection's lines and its writing half.
pub(crate) async fn one_connection(
    dir: &tempfile::TempDir,
) -> (
    crate::events::Bus,
    crate::shutdown::Trigger,
    tokio::task::JoinHandle<()>,
    tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    tokio::net::unix::OwnedWriteHalf,
) {
    let ctx = context(dir);
    let path = dir.path().join("s.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let (trigger, shutdown) = crate::shutdown::channel();
    let bus = ctx.events.clone();
    let server = tokio::spawn(serve(listener, ctx, shutdown));
    let stream = UnixStream::connect(&path).await.unwrap();
    let (r, w) = stream.into_split();
    (bus, trigger, server, BufReader::new(r).lines(), w)
}
