//! The queues between the transports and the SIP engine.
//!
//! Only the trunk's traffic gets here (outsiders are answered or dropped
//! at the socket, see [`super::gate`]). It goes into one of two bounded
//! queues ([`crate::config::LimitsConfig::inbound_queue`] each):
//! - **urgent**: responses and requests about something that exists
//!   (in-dialog requests, ACK, CANCEL). A transport waits when it is full
//!   (back-pressure onto the socket), and never drops from it.
//! - **fresh**: requests that would open something new (an INVITE, an
//!   OPTIONS outside a dialog). When it is full the request is shed,
//!   dropped and counted (`ansim_sip_inbound_shed_total`): the caller's
//!   retransmission or failover deals with it, and calls in progress go on.
//!
//! The engine always takes from the urgent queue first, so a burst of new
//! calls never delays the BYE of a call already up.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::{Inbound, TransportCounters};

/// The engine is gone: nothing more can be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the SIP engine has stopped")]
pub struct EngineGone;

/// The transports' end of the queues; cheap to clone.
#[derive(Debug, Clone)]
pub struct InboundSender {
    /// Responses and requests about something that exists.
    urgent: mpsc::Sender<Inbound>,
    /// Requests that would open something new.
    fresh: mpsc::Sender<Inbound>,
    /// Where shed requests are counted.
    counters: Arc<TransportCounters>,
}

/// The engine's end of the queues.
#[derive(Debug)]
pub struct InboundReceiver {
    /// Taken first.
    urgent: mpsc::Receiver<Inbound>,
    /// Taken when nothing is urgent.
    fresh: mpsc::Receiver<Inbound>,
}

/// Two queues of `capacity` messages each.
pub fn inbound_queues(
    capacity: usize,
    counters: Arc<TransportCounters>,
) -> (InboundSender, InboundReceiver) {
    let (urgent_tx, urgent) = mpsc::channel(capacity.max(1));
    let (fresh_tx, fresh) = mpsc::channel(capacity.max(1));
    let sender = InboundSender {
        urgent: urgent_tx,
        fresh: fresh_tx,
        counters,
    };
    (sender, InboundReceiver { urgent, fresh })
}

impl InboundSender {
    /// Queues one message from the trunk: a fresh request is shed if its
    /// queue is full; anything else waits for room.
    pub async fn send(&self, message: Inbound) -> Result<(), EngineGone> {
        if !crate::sip::peek::opens_new(&message.data) {
            return self.urgent.send(message).await.map_err(|_| EngineGone);
        }
        match self.fresh.try_send(message) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.counters.inbound_shed.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(EngineGone),
        }
    }
}

impl InboundReceiver {
    /// A message if one is waiting now, urgent ones first.
    pub fn try_recv(&mut self) -> Option<Inbound> {
        self.urgent
            .try_recv()
            .or_else(|_| self.fresh.try_recv())
            .ok()
    }

    /// The next message, urgent ones first; `None` once every transport
    /// has stopped.
    pub async fn recv(&mut self) -> Option<Inbound> {
        tokio::select! {
            biased;
            Some(m) = self.urgent.recv() => Some(m),
            Some(m) = self.fresh.recv() => Some(m),
            else => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Flow;

    fn msg(text: &str) -> Inbound {
        Inbound {
            flow: Flow::Udp {
                socket: 0,
                remote: "127.0.0.1:5060".parse().unwrap(),
            },
            data: text.as_bytes().to_vec(),
        }
    }

    const INVITE: &str = "INVITE sip:x SIP/2.0\r\nTo: <sip:x>\r\n\r\n";
    const BYE: &str = "BYE sip:x SIP/2.0\r\nTo: <sip:x>;tag=1\r\n\r\n";

    #[tokio::test]
    async fn a_full_fresh_queue_sheds_new_requests_but_never_dialogs() {
        let counters = Arc::new(TransportCounters::default());
        let (tx, mut rx) = inbound_queues(2, counters.clone());
        for _ in 0..5 {
            tx.send(msg(INVITE)).await.unwrap();
        }
        assert_eq!(counters.inbound_shed.load(Ordering::Relaxed), 3);
        tx.send(msg(BYE)).await.unwrap();
        tx.send(msg("SIP/2.0 200 OK\r\n\r\n")).await.unwrap();
        // Urgent first, in order, then the fresh ones that fitted.
        let order: Vec<String> = [(); 4]
            .iter()
            .map(|_| rx.urgent.try_recv().or_else(|_| rx.fresh.try_recv()))
            .map(|m| String::from_utf8(m.unwrap().data).unwrap())
            .collect();
        assert!(order[0].starts_with("BYE"));
        assert!(order[1].starts_with("SIP/2.0 200"));
        assert!(order[2].starts_with("INVITE") && order[3].starts_with("INVITE"));
    }

    #[tokio::test]
    async fn recv_prefers_urgent_and_ends_when_senders_are_gone() {
        let (tx, mut rx) = inbound_queues(8, Arc::default());
        tx.send(msg(INVITE)).await.unwrap();
        tx.send(msg(BYE)).await.unwrap();
        assert!(rx.recv().await.unwrap().data.starts_with(b"BYE"));
        assert!(rx.recv().await.unwrap().data.starts_with(b"INVITE"));
        drop(tx);
        assert!(rx.recv().await.is_none());
    }
}
