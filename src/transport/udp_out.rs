//! The UDP messages of one engine flush, sent with one `sendmmsg(2)` per
//! socket (up to [`CHUNK`] at a time) instead of a `sendto` each. While
//! the engine keeps up a flush carries one or two messages and this saves
//! little; when it falls behind, a flush carries the answers to a whole
//! batch of received messages (up to 64), and they leave in one call.
//!
//! Nothing waits: a full send buffer drops the message it stopped at (SIP
//! retransmission covers UDP loss), exactly as a lone `try_send_to` does.
//! The only `unsafe` of the transport module: the kernel is handed
//! pointers into arrays on this function's stack and into the queued
//! messages, all of which outlive the call.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::SockAddr;
use tokio::net::UdpSocket;

/// Messages per system call at most.
const CHUNK: usize = 64;

/// UDP messages waiting for the end of a flush, in the order queued.
#[derive(Debug, Default)]
pub struct UdpOutbox {
    /// (socket index, remote, message).
    pending: Vec<(usize, SocketAddr, Vec<u8>)>,
}

impl UdpOutbox {
    /// An empty outbox (it keeps its capacity from flush to flush).
    pub fn new() -> UdpOutbox {
        UdpOutbox::default()
    }

    pub(super) fn push(&mut self, socket: usize, remote: SocketAddr, bytes: Vec<u8>) {
        self.pending.push((socket, remote, bytes));
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Sends everything queued on `sockets` (by index; a message for an
    /// index with no socket is dropped) and empties the outbox. Messages
    /// for one socket leave in the order they were queued. Returns how
    /// many were not sent.
    pub(super) fn flush(&mut self, sockets: &[std::sync::Arc<UdpSocket>]) -> usize {
        // Usually one socket: the stable sort keeps each socket's order.
        self.pending.sort_by_key(|(socket, _, _)| *socket);
        let mut dropped = 0;
        let mut start = 0;
        while start < self.pending.len() {
            let socket = self.pending[start].0;
            let end = self.pending[start..]
                .iter()
                .position(|(s, _, _)| *s != socket)
                .map_or(self.pending.len(), |k| start + k);
            let run = &self.pending[start..end];
            dropped += match sockets.get(socket) {
                Some(s) => run
                    .chunks(CHUNK)
                    .map(|c| send_chunk(s.as_raw_fd(), c))
                    .sum(),
                None => run.len(),
            };
            start = end;
        }
        self.pending.clear();
        dropped
    }
}

/// Sends `chunk` (at most [`CHUNK`] messages) on `fd`; how many were not
/// sent. A message the kernel refuses (full buffer, an ICMP error
/// reported here) is skipped and the rest go on.
fn send_chunk(fd: std::os::fd::RawFd, chunk: &[(usize, SocketAddr, Vec<u8>)]) -> usize {
    debug_assert!(chunk.len() <= CHUNK);
    let addrs: Vec<SockAddr> = chunk.iter().map(|(_, a, _)| SockAddr::from(*a)).collect();
    // SAFETY: all-zero is a valid iovec and mmsghdr (null pointers, zero
    // lengths); each is filled in below before the kernel sees it.
    let mut iovecs: [libc::iovec; CHUNK] = unsafe { std::mem::zeroed() };
    let mut headers: [libc::mmsghdr; CHUNK] = unsafe { std::mem::zeroed() };
    for (i, ((_, _, bytes), addr)) in chunk.iter().zip(&addrs).enumerate() {
        iovecs[i] = libc::iovec {
            // The kernel only reads from it (sendmmsg).
            iov_base: bytes.as_ptr().cast_mut().cast(),
            iov_len: bytes.len(),
        };
        let h = &mut headers[i].msg_hdr;
        h.msg_name = addr.as_ptr().cast_mut().cast();
        h.msg_namelen = addr.len();
        h.msg_iov = &mut iovecs[i];
        h.msg_iovlen = 1;
    }
    let (total, mut sent, mut dropped) = (chunk.len(), 0, 0);
    while sent < total {
        // SAFETY: the headers point into `iovecs`, `addrs` and `chunk`,
        // all alive and unmoved for the duration of the call.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                headers[sent..].as_mut_ptr(),
                (total - sent) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n <= 0 {
            let (_, remote, _) = &chunk[sent];
            tracing::debug!(%remote, error = %std::io::Error::last_os_error(), "UDP send failed");
            dropped += 1;
            sent += 1;
        } else {
            sent += n as usize;
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_flush_sends_each_sockets_messages_in_order() {
        let a = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let b = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = peer.local_addr().unwrap();
        let mut out = UdpOutbox::new();
        // More than one chunk on socket 0, interleaved with socket 1, and
        // one for a socket that does not exist.
        for i in 0..(CHUNK + 6) {
            out.push(i % 2, to, format!("m{i}").into_bytes());
        }
        out.push(7, to, b"nowhere".to_vec());
        assert_eq!(out.flush(&[a.clone(), b.clone()]), 1);
        assert!(out.is_empty());
        let mut from_a = Vec::new();
        let mut from_b = Vec::new();
        let mut buf = [0u8; 64];
        for _ in 0..(CHUNK + 6) {
            let (n, from) = peer.recv_from(&mut buf).unwrap();
            let text = String::from_utf8(buf[..n].to_vec()).unwrap();
            if from == a.local_addr().unwrap() {
                from_a.push(text);
            } else {
                assert_eq!(from, b.local_addr().unwrap());
                from_b.push(text);
            }
        }
        let want = |parity| -> Vec<String> {
            (0..(CHUNK + 6))
                .filter(|i| i % 2 == parity)
                .map(|i| format!("m{i}"))
                .collect()
        };
        assert_eq!(from_a, want(0));
        assert_eq!(from_b, want(1));
    }

    #[tokio::test]
    async fn a_refused_message_is_skipped_and_the_rest_go_on() {
        let a = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut out = UdpOutbox::new();
        out.push(0, peer.local_addr().unwrap(), b"one".to_vec());
        // Too large for a datagram: EMSGSIZE.
        out.push(0, peer.local_addr().unwrap(), vec![0u8; 70_000]);
        out.push(0, peer.local_addr().unwrap(), b"three".to_vec());
        assert_eq!(out.flush(&[a]), 1);
        let mut buf = [0u8; 64];
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"three");
    }
}
