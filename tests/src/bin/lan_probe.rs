//! `lan-probe`: the small TCP program the end-to-end tests run inside a workstation of their LAN
//! (`tests/tests/it/common/netns.rs`) to see whether one workstation reaches another.
//!
//! - `lan-probe listen IP`: listens on `IP` at a port the system picks, prints
//!   `listening ADDRESS:PORT`, and echoes every line of every connection back.
//! - `lan-probe client`: reads orders on its standard input, one a line, and answers each with
//!   one line on its standard output:
//!   - `connect MILLISECONDS ADDRESS:PORT` opens a connection (replacing the one before), waiting
//!     at most that long: `connected`, or `failed KIND DETAIL`;
//!   - `echo MILLISECONDS TEXT` sends `TEXT` on the connection and waits at most that long for
//!     it to come back: `echoed TEXT`, or `failed KIND DETAIL`.
//!
//!   `KIND` is one of `timeout`, `refused`, `reset`, `eof`, `unreachable`, `mismatch`,
//!   `not-connected`, `bad-order`, `other`. It stops at the end of its input.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["listen", ip] => listen(ip),
        ["client"] => client(),
        _ => Err("usage: lan-probe listen IP | lan-probe client".to_string()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lan-probe: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Listens on `ip`, prints the address, echoes lines back (a thread per connection).
fn listen(ip: &str) -> Result<(), String> {
    let ip: std::net::IpAddr = ip.parse().map_err(|e| format!("address {ip:?}: {e}"))?;
    let listener = TcpListener::bind((ip, 0)).map_err(|e| format!("bind {ip}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("local address: {e}"))?;
    let mut out = std::io::stdout();
    writeln!(out, "listening {local}").map_err(|e| format!("stdout: {e}"))?;
    out.flush().map_err(|e| format!("stdout: {e}"))?;
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        std::thread::spawn(move || echo_lines(conn));
    }
    Ok(())
}

/// Sends every line read on `conn` back, until the peer closes or an error.
fn echo_lines(conn: TcpStream) {
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { return };
        if writeln!(writer, "{line}").is_err() {
            return;
        }
    }
}

/// One connection at a time, driven by orders on stdin.
struct Client {
    conn: Option<(TcpStream, BufReader<TcpStream>)>,
}

fn client() -> Result<(), String> {
    let mut state = Client { conn: None };
    let mut out = std::io::stdout();
    for order in std::io::stdin().lock().lines() {
        let order = order.map_err(|e| format!("stdin: {e}"))?;
        let answer = match state.run(&order) {
            Ok(answer) => answer,
            Err((kind, detail)) => format!("failed {kind} {detail}"),
        };
        writeln!(out, "{answer}").map_err(|e| format!("stdout: {e}"))?;
        out.flush().map_err(|e| format!("stdout: {e}"))?;
    }
    Ok(())
}

impl Client {
    fn run(&mut self, order: &str) -> Result<String, (&'static str, String)> {
        let mut words = order.splitn(3, ' ');
        let (verb, millis, rest) = (words.next(), words.next(), words.next().unwrap_or(""));
        let wait = millis
            .and_then(|m| m.parse::<u64>().ok())
            .map(Duration::from_millis)
            .ok_or(("bad-order", format!("{order:?}: no MILLISECONDS")))?;
        match verb {
            Some("connect") => self.connect(rest, wait),
            Some("echo") => self.echo(rest, wait),
            _ => Err(("bad-order", format!("{order:?}"))),
        }
    }

    fn connect(&mut self, addr: &str, wait: Duration) -> Result<String, (&'static str, String)> {
        self.conn = None;
        let addr: SocketAddr = addr
            .parse()
            .map_err(|e| ("bad-order", format!("address {addr:?}: {e}")))?;
        let conn = TcpStream::connect_timeout(&addr, wait).map_err(failure)?;
        let reader = conn.try_clone().map_err(failure)?;
        self.conn = Some((conn, BufReader::new(reader)));
        Ok("connected".to_string())
    }

    fn echo(&mut self, text: &str, wait: Duration) -> Result<String, (&'static str, String)> {
        let (conn, reader) = self.conn.as_mut().ok_or(("not-connected", String::new()))?;
        conn.set_write_timeout(Some(wait)).map_err(failure)?;
        reader
            .get_ref()
            .set_read_timeout(Some(wait))
            .map_err(failure)?;
        writeln!(conn, "{text}").map_err(failure)?;
        let mut line = String::new();
        match reader.read_line(&mut line).map_err(failure)? {
            0 => Err(("eof", String::new())),
            _ if line.trim_end_matches('\n') == text => Ok(format!("echoed {text}")),
            _ => Err(("mismatch", line.trim_end().to_string())),
        }
    }
}

/// An I/O error as the kind of failure a test tells apart, and its text.
fn failure(e: std::io::Error) -> (&'static str, String) {
    use std::io::ErrorKind as K;
    let kind = match e.kind() {
        K::TimedOut | K::WouldBlock => "timeout",
        K::ConnectionRefused => "refused",
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => "reset",
        K::UnexpectedEof => "eof",
        K::HostUnreachable | K::NetworkUnreachable => "unreachable",
        _ => "other",
    };
    (kind, e.to_string())
}
