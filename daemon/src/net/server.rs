//! The network API's listener: TCP, TLS 1.3 only (rustls, ring), a client certificate
//! required. [`EnrolledOnly`] wraps rustls' `WebPkiClientVerifier` (a chain to the practice
//! CA, its dates, clientAuth) and also refuses a certificate that is not enrolled or is
//! revoked; each refusal at the handshake is logged with the certificate's fingerprint and
//! the reason. An accepted connection is served by `api::server::serve_connection` as
//! `Peer::Workstation`, under the local API's limits (`api.max_connections`, and
//! `api.max_connections_per_uid` per workstation) and idle timeout. A revocation closes the
//! workstation's open connections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fsed_client::tls::{fingerprint, provider};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use super::store::Store;
use super::{ca, NetError, Network};
use crate::api::{Id, Reply};
use crate::caller::{Caller, ClientId, Peer};
use crate::context::Context;
use crate::shutdown::{self, Shutdown};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The limits of network connections (the local API's, from `[api]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections served at once.
    pub max_connections: usize,
    /// Most connections served at once for one workstation.
    pub per_workstation: usize,
    /// Event notifications queued per connection.
    pub queued: usize,
    /// Idle timeout.
    pub idle: Duration,
}

/// The client-certificate check: rustls' chain, dates and usage check, then enrolled and
/// not revoked. Each refusal is logged with the fingerprint and the reason.
#[derive(Debug)]
pub struct EnrolledOnly {
    inner: Arc<dyn ClientCertVerifier>,
    store: Arc<Store>,
}

impl ClientCertVerifier for EnrolledOnly {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let fp = fingerprint(end_entity);
        if let Err(e) = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            tracing::warn!(fingerprint = %fp, reason = %e, "network API: client certificate refused at the handshake");
            return Err(e);
        }
        match self.store.find(&fp) {
            Some(entry) if entry.revoked_at.is_none() => Ok(ClientCertVerified::assertion()),
            Some(entry) => {
                tracing::warn!(fingerprint = %fp, workstation = %entry.name, reason = "revoked", revoked_at = entry.revoked_at.as_deref().unwrap_or_default(), "network API: client certificate refused at the handshake");
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::Revoked,
                ))
            }
            None => {
                tracing::warn!(fingerprint = %fp, reason = "not enrolled", "network API: client certificate refused at the handshake");
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The server certificate in use (made or renewed as needed); its end is kept for the doctor.
fn server_identity(net: &Network) -> Result<ca::Issued, NetError> {
    let ca = net.ca()?;
    let issued = ca::server_certificate(&net.dir, &ca, &net.settings.server_names)?;
    net.set_server_not_after(issued.not_after);
    Ok(issued)
}

/// The API listener's TLS configuration: TLS 1.3, the server certificate, a client
/// certificate of the practice CA required, enrolled and in force.
pub fn api_config(net: &Network) -> Result<Arc<rustls::ServerConfig>, NetError> {
    let ca = net.ca()?;
    let issued = server_identity(net)?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone())?;
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| NetError::Certificate(e.to_string()))?;
    let verifier = Arc::new(EnrolledOnly {
        inner,
        store: Arc::clone(&net.store),
    });
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![issued.certificate, ca.der.clone()], issued.key)?;
    Ok(Arc::new(config))
}

/// The enrollment listener's TLS configuration: TLS 1.3, the server certificate, no client
/// certificate.
pub fn enroll_config(net: &Network) -> Result<Arc<rustls::ServerConfig>, NetError> {
    let ca = net.ca()?;
    let issued = server_identity(net)?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![issued.certificate, ca.der.clone()], issued.key)?;
    Ok(Arc::new(config))
}

/// Binds the API listener at `network.listen` (none when unset); the bound address is logged
/// and kept for the doctor.
pub fn bind(net: &Network) -> Result<Option<tokio::net::TcpListener>, NetError> {
    let Some(address) = net.settings.listen else {
        return Ok(None);
    };
    let err = |source| NetError::Bind { address, source };
    let std = std::net::TcpListener::bind(address).map_err(err)?;
    std.set_nonblocking(true).map_err(err)?;
    let bound = std.local_addr().map_err(err)?;
    let listener = tokio::net::TcpListener::from_std(std).map_err(err)?;
    net.set_bound(bound);
    Ok(Some(listener))
}

/// Serves the network API on `listener` until shutdown.
pub async fn serve(
    net: Arc<Network>,
    listener: tokio::net::TcpListener,
    ctx: Context,
    limits: Limits,
    mut shutdown: Shutdown,
) {
    let mut config = match api_config(&net) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "network API not started");
            return;
        }
    };
    if let Some(a) = net.bound() {
        tracing::info!(address = %a, ca_fingerprint = %net.ca().map(|c| c.fingerprint()).unwrap_or_default(), "network API listening");
    }
    let limit = Arc::new(Semaphore::new(limits.max_connections));
    let ids = AtomicU64::new(1);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait() => break,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "network API: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // The server certificate renewed when within its last days.
        let ends = net.server_not_after().unwrap_or(i64::MAX);
        if ends - chrono::Utc::now().timestamp() < ca::RENEW_DAYS * 86_400 {
            match api_config(&net) {
                Ok(c) => config = c,
                Err(e) => tracing::warn!(error = %e, "network API: server certificate not renewed"),
            }
        }
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            tracing::warn!(%peer, limit = limits.max_connections, "network API connection refused: too many connections");
            continue;
        };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let (net, ctx, acceptor) = (
            Arc::clone(&net),
            ctx.clone(),
            tokio_rustls::TlsAcceptor::from(Arc::clone(&config)),
        );
        let global = shutdown.clone();
        tokio::spawn(async move {
            connection(&net, acceptor, tcp, id, ctx, limits, global).await;
            drop(permit);
        });
    }
}

/// One connection: the handshake, the per-workstation limit, then the API.
async fn connection(
    net: &Network,
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    id: u64,
    ctx: Context,
    limits: Limits,
    mut global: Shutdown,
) {
    let peer = tcp.peer_addr().ok();
    let _ = tcp.set_nodelay(true);
    let mut tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(?peer, error = %e, "network API: handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(?peer, "network API: handshake timed out");
            return;
        }
    };
    let certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| fingerprint(c));
    let Some(entry) = certificate.and_then(|fp| net.store.in_force(&fp)) else {
        // Revoked between the check and here.
        return;
    };
    let name = entry.name.clone();
    if net.connections(&name) >= limits.per_workstation {
        let n = limits.per_workstation;
        tracing::warn!(workstation = %name, limit = n, "network API connection refused: too many connections for this workstation");
        let line = Reply::err(
            Id::Null,
            fse_formats::api::ErrorObject::new(
                fse_formats::api::TOO_MANY_CONNECTIONS_FOR_PEER,
                format!("fsed already serves {n} connections of workstation {name} (api.max_connections_per_uid): close one or try again later"),
                None,
            )
            .with("limit", serde_json::json!(n))
            .with("workstation", serde_json::json!(name)),
        )
        .to_line();
        let _ = tls.write_all(&line).await;
        let _ = tls.shutdown().await;
        return;
    }
    let (trigger, stop) = shutdown::channel();
    net.connected(&name, id, trigger.clone());
    let forward = {
        let trigger = trigger.clone();
        tokio::spawn(async move {
            global.wait().await;
            trigger.fire();
        })
    };
    tracing::debug!(workstation = %name, ?peer, "network API connection");
    let caller = Caller {
        client: ClientId::fresh(),
        peer: Peer::Workstation {
            name: name.clone(),
            fingerprint: entry.fingerprint,
        },
    };
    crate::api::server::serve_connection(tls, caller, ctx, limits.queued, limits.idle, stop).await;
    forward.abort();
    net.disconnected(&name, id);
    drop(trigger);
}
