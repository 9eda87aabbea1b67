//! `fse_simulator`: simulated CPS and Vitale cards (ISO 7816-4) with their
//! vpcd link, the insurer simulator (AMQP and spool), the load generator
//! that drives fsed like many practices (`practice`), and the demo that runs
//! fsed on its embedded defaults. Binary: `fse-sim`.

pub mod card;
pub mod cards_cmd;
pub mod control;
pub mod demo;
pub mod insurer;
pub mod pki;
pub mod practice;
pub mod profiles;
pub mod vpcd;

/// Resolves on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
