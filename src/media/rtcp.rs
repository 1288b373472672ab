//! RTCP identity scrubbing: what of a party's RTCP may reach the other leg.
//!
//! RTCP (RFC 3550 §6) is a *compound* datagram: several RTCP packets back to
//! back, each with a 4-byte header (version, padding bit, a 5-bit count, the
//! packet type, the length in 32-bit words minus one). Most of it is numbers
//! the other party's phone needs for quality and lip sync (SSRCs, sequence
//! numbers, loss, jitter), but two packet types carry text that a softphone
//! fills with who it is, and one carries arbitrary application data:
//!
//! | packet | what crosses to the other leg |
//! | --- | --- |
//! | SR 200, RR 201, XR 207, RTPFB 205, PSFB 206 | unchanged (numbers only) |
//! | SDES 202 | each chunk keeps its SSRC/CSRC and gets exactly one item: `CNAME` = ours for that leg; NAME, EMAIL, PHONE, LOC, TOOL, NOTE, PRIV and unknown items are dropped |
//! | BYE 203 | the SSRC list; the optional "reason for leaving" text is dropped |
//! | APP 204 and unknown types 192–223 | removed |
//!
//! [`sanitize`] does this **in place** in the relay's receive buffer, with no
//! allocation and no I/O. A datagram that is not a well-formed compound
//! packet (wrong version, a length beyond the datagram or not adding up to
//! it, padding anywhere but on the last packet, an SDES chunk whose items
//! overrun it, ...) yields `None`: the relay drops it and counts it, like any
//! other peer garbage. So does a datagram of which nothing is left (APP only).
//!
//! # How the in-place rewrite works
//! Rewriting SDES can make a chunk *longer* (a phone's CNAME `a@b` is shorter
//! than ours), while dropping items, BYE reasons and APP packets makes the
//! output shorter. To write the output over the input without overtaking
//! bytes not read yet, [`sanitize`] makes two passes over the same code
//! (`Rewriter`):
//! 1. **measure**: validate everything and compute, besides the output
//!    length, the *lead*: how far the output ever gets ahead of the input at
//!    the end of a packet or SDES chunk (`max(written − read)`, 0 if it
//!    never does);
//! 2. move the input `lead` bytes to the right (one `copy_within`), then
//!    **write**: the same walk, now reading from the moved input and writing
//!    from the start of the buffer. By construction the output never passes
//!    the start of the input still to be read; within one unit only that
//!    unit's own input is overwritten, and what is needed of it (an SSRC) is
//!    read first.
//!
//! # Length bound
//! With `k` SDES chunks in the input and our CNAME of `c` bytes, the output
//! is at most `len + k × (pad4(c + 3) − 4)` bytes (a chunk is at least 8
//! bytes in, exactly `4 + pad4(c + 3)` out; everything else only shrinks):
//! 16 more bytes per chunk for a 16-character CNAME. Since the lead must fit
//! too, [`sanitize`] returns `None` when `lead + len > packet.len()`,
//! never writing past the buffer (the relay's is `MAX_DATAGRAM + 1` bytes).

use std::fmt;

/// The only RTP/RTCP version (RFC 3550).
const VERSION: u8 = 2;
/// Length of every RTCP packet's common header.
const HEADER_LEN: usize = 4;
/// Length of an SSRC or CSRC identifier.
const SSRC_LEN: usize = 4;

/// Sender report.
const SR: u8 = 200;
/// Receiver report.
const RR: u8 = 201;
/// Source description.
const SDES: u8 = 202;
/// Goodbye.
const BYE: u8 = 203;
/// Application-defined (removed, like unknown types).
const APP: u8 = 204;
/// Transport-layer feedback (RFC 4585).
const RTPFB: u8 = 205;
/// Payload-specific feedback (RFC 4585).
const PSFB: u8 = 206;
/// Extended reports (RFC 3611).
const XR: u8 = 207;

/// The SDES item type of the canonical name.
const CNAME_ITEM: u8 = 1;
/// Length of one report block in SR and RR.
const REPORT_BLOCK_LEN: usize = 24;
/// Header, sender SSRC and sender info of an SR.
const SR_FIXED_LEN: usize = 28;
/// Header and reporter SSRC of an RR or XR.
const RR_FIXED_LEN: usize = 8;
/// Header, sender SSRC and media SSRC of a feedback message.
const FEEDBACK_FIXED_LEN: usize = 12;

/// The longest CNAME an SDES item can carry (its length is one octet).
pub const MAX_CNAME_LEN: usize = 255;

/// Sanitises the RTCP datagram `packet[..len]` in place (see the module
/// docs) and returns the length of the result, which starts at
/// `packet[0]`. `cname` is the value every SDES chunk gets (ours, for the
/// leg the packet is relayed to; see [`Cname`]).
///
/// Bytes of `packet` past `len` are spare room: the result may be longer
/// than the input (by at most the bound in the module docs), never longer
/// than `packet.len()`.
///
/// Returns `None`, leaving `packet` in an unspecified state, if the
/// datagram is not a well-formed RTCP compound packet, if nothing of it
/// is to be relayed, if `len > packet.len()`, if `cname` is longer than
/// [`MAX_CNAME_LEN`], or if the result would not fit in `packet`.
#[must_use]
pub fn sanitize(packet: &mut [u8], len: usize, cname: &[u8]) -> Option<usize> {
    if len > packet.len() || cname.len() > MAX_CNAME_LEN {
        return None;
    }
    let measured = Rewriter::new(packet, 0, len, cname, Pass::Measure).run()?;
    let end = measured.lead.checked_add(len)?;
    if end > packet.len() {
        return None;
    }
    packet.copy_within(..len, measured.lead);
    let written = Rewriter::new(packet, measured.lead, len, cname, Pass::Write).run()?;
    debug_assert_eq!(written.written, measured.written);
    Some(written.written)
}

/// Length of the SDES chunk [`sanitize`] writes for a CNAME of `cname_len`
/// bytes: SSRC, item type, item length, the text, at least one null octet,
/// padded to 32 bits.
#[must_use]
pub fn sdes_chunk_len(cname_len: usize) -> usize {
    SSRC_LEN + pad4(2 + cname_len + 1)
}

/// Our CNAME for one leg (RFC 3550 §6.5.1, RFC 7022): 16 random lowercase
/// hex characters, made once per leg when the call starts, so the two
/// parties never see each other's CNAME (which softphones often derive from
/// a user name, host name or MAC address), and two calls never share ours.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cname {
    /// The ASCII hex text.
    text: [u8; 16],
}

impl Cname {
    /// A fresh random CNAME (64 bits from the thread's CSPRNG).
    #[must_use]
    pub fn random() -> Cname {
        Cname::from_raw(rand::random())
    }

    /// The CNAME spelling `raw` in hex (for tests that need a fixed one).
    #[must_use]
    pub fn from_raw(raw: [u8; 8]) -> Cname {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0; 16];
        for (pair, byte) in text.chunks_exact_mut(2).zip(raw) {
            pair.copy_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0x0f)]]);
        }
        Cname { text }
    }

    /// The CNAME's bytes, as [`sanitize`] takes them.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.text
    }
}

impl fmt::Display for Cname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Always ASCII hex by construction.
        f.write_str(std::str::from_utf8(&self.text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Cname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cname({self})")
    }
}

/// Rounds `n` up to a multiple of 4.
fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Which of the two passes of [`sanitize`] a [`Rewriter`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Validate and count; write nothing.
    Measure,
    /// Write the output from the start of the buffer.
    Write,
}

/// What a pass found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outcome {
    /// Length of the output.
    written: usize,
    /// How far the output got ahead of the input at most (see module docs).
    lead: usize,
}

/// One RTCP packet's common header, as read from the datagram.
#[derive(Debug, Clone, Copy)]
struct Header {
    /// The 5-bit count field (report blocks, SDES chunks, BYE sources, FMT).
    count: u8,
    /// The packet type.
    packet_type: u8,
    /// Whole length of the packet in bytes, header and padding included.
    len: usize,
    /// Padding octets at the end of the packet (0 without the P bit).
    padding: usize,
}

impl Header {
    /// Length of the packet without its padding.
    fn content_len(&self) -> usize {
        self.len - self.padding
    }

    /// The count field read as the number of report blocks (SR, RR).
    fn blocks(&self) -> usize {
        usize::from(self.count)
    }
}

/// One walk over a compound packet (see the module docs): reads the input
/// at `buf[base..base + len]` and, in the write pass, writes the output at
/// `buf[..]`. All offsets but `base` count from the start of the input or
/// the output.
struct Rewriter<'a> {
    /// The whole buffer: the input (from `base`) and room for the output.
    buf: &'a mut [u8],
    /// Where the input starts in `buf`.
    base: usize,
    /// Length of the input.
    len: usize,
    /// The CNAME every SDES chunk gets.
    cname: &'a [u8],
    /// Measure or write.
    pass: Pass,
    /// Input bytes consumed so far.
    read: usize,
    /// Output bytes produced so far.
    written: usize,
    /// `max(written - read)` at the end of each unit so far.
    lead: usize,
}

impl<'a> Rewriter<'a> {
    fn new(buf: &'a mut [u8], base: usize, len: usize, cname: &'a [u8], pass: Pass) -> Self {
        Rewriter {
            buf,
            base,
            len,
            cname,
            pass,
            read: 0,
            written: 0,
            lead: 0,
        }
    }

    /// Walks every packet of the compound; `None` if it is malformed or
    /// nothing is left of it.
    fn run(mut self) -> Option<Outcome> {
        while self.read < self.len {
            let header = self.header()?;
            let last = self.read + header.len == self.len;
            if header.padding > 0 && !last {
                return None; // RFC 3550 A.2: only the last packet is padded
            }
            match header.packet_type {
                SR => self.keep(&header, SR_FIXED_LEN + REPORT_BLOCK_LEN * header.blocks())?,
                RR => self.keep(&header, RR_FIXED_LEN + REPORT_BLOCK_LEN * header.blocks())?,
                XR => self.keep(&header, RR_FIXED_LEN)?,
                RTPFB | PSFB => self.keep(&header, FEEDBACK_FIXED_LEN)?,
                SDES => self.sdes(&header)?,
                BYE => self.bye(&header)?,
                // APP and types not defined yet: anything may be in them,
                // so nothing of them crosses.
                APP | 192..=223 => self.read += header.len,
                _ => return None,
            }
        }
        (self.written > 0).then_some(Outcome {
            written: self.written,
            lead: self.lead,
        })
    }

    /// The header of the packet at the read position, checked against the
    /// datagram: version 2, length within it, padding count within the
    /// packet.
    fn header(&self) -> Option<Header> {
        let [first, packet_type, high, low] = self.input_array::<4>(self.read)?;
        if first >> 6 != VERSION {
            return None;
        }
        let len = (usize::from(u16::from_be_bytes([high, low])) + 1) * 4;
        if self.read + len > self.len {
            return None;
        }
        let padded = first & 0x20 != 0;
        let padding = if padded {
            // The last octet counts the padding, itself included.
            let [count] = self.input_array::<1>(self.read + len - 1)?;
            usize::from(count)
        } else {
            0
        };
        if padded && !(1..=len - HEADER_LEN).contains(&padding) {
            return None;
        }
        Some(Header {
            count: first & 0x1f,
            packet_type,
            len,
            padding,
        })
    }

    /// Passes the packet on unchanged, once its content holds at least
    /// `min_len` bytes.
    fn keep(&mut self, header: &Header, min_len: usize) -> Option<()> {
        if header.content_len() < min_len {
            return None;
        }
        self.move_input(header.len)?;
        self.read += header.len;
        self.written += header.len;
        self.end_unit();
        Some(())
    }

    /// Passes on the header and SSRC list of a BYE, without its reason.
    fn bye(&mut self, header: &Header) -> Option<()> {
        let sources = usize::from(header.count);
        let kept = HEADER_LEN + SSRC_LEN * sources;
        if kept > header.content_len() {
            return None;
        }
        let start = self.written;
        self.move_input(kept)?;
        // P cleared (the padding went with the reason), length = the list.
        self.overwrite(start, &rtcp_header(header.count, BYE, kept)?)?;
        self.read += header.len;
        self.written += kept;
        self.end_unit();
        Some(())
    }

    /// Rewrites an SDES packet: each chunk's SSRC with our CNAME alone.
    fn sdes(&mut self, header: &Header) -> Option<()> {
        let chunks = usize::from(header.count);
        let chunk_out = sdes_chunk_len(self.cname.len());
        let packet_end = self.read + header.len;
        let content_end = self.read + header.content_len();
        let start = self.written;
        self.overwrite(
            start,
            &rtcp_header(header.count, SDES, HEADER_LEN + chunks * chunk_out)?,
        )?;
        self.read += HEADER_LEN;
        self.written += HEADER_LEN;
        for _ in 0..chunks {
            let chunk_in = self.chunk_len(content_end)?;
            let ssrc = self.input_array::<SSRC_LEN>(self.read)?;
            self.read += chunk_in;
            self.put(&ssrc)?;
            self.put(&[CNAME_ITEM, u8::try_from(self.cname.len()).ok()?])?;
            self.put(self.cname)?;
            let nulls = chunk_out - SSRC_LEN - 2 - self.cname.len();
            self.put([0; 4].get(..nulls)?)?;
            self.end_unit();
        }
        if self.read != content_end {
            return None; // bytes after the last chunk that no count covers
        }
        self.read = packet_end;
        Some(())
    }

    /// Length of the SDES chunk at the read position: SSRC, items, the null
    /// octet ending them and the nulls up to the next 32-bit boundary, all
    /// before `content_end`.
    fn chunk_len(&self, content_end: usize) -> Option<usize> {
        let start = self.read;
        let mut at = start + SSRC_LEN;
        loop {
            if at >= content_end {
                return None; // items not terminated within the packet
            }
            let [item_type] = self.input_array::<1>(at)?;
            if item_type == 0 {
                break;
            }
            let [_, item_len] = self.input_array::<2>(at)?;
            at += 2 + usize::from(item_len);
        }
        let end = start + pad4(at + 1 - start);
        (end <= content_end).then_some(end - start)
    }

    /// Notes how far the output is ahead of the input after a unit.
    fn end_unit(&mut self) {
        self.lead = self.lead.max(self.written.saturating_sub(self.read));
    }

    /// `N` input bytes at input offset `at`, if they are within the input.
    fn input_array<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        if at + N > self.len {
            return None;
        }
        let from = self.base + at;
        self.buf.get(from..from + N)?.try_into().ok()
    }

    /// Write pass: copies `n` input bytes from the read position to the
    /// write position (which may overlap: `copy_within` is a memmove).
    fn move_input(&mut self, n: usize) -> Option<()> {
        if self.pass == Pass::Write {
            let from = self.base + self.read;
            if from + n > self.buf.len() || self.written + n > self.buf.len() {
                return None;
            }
            self.buf.copy_within(from..from + n, self.written);
        }
        Some(())
    }

    /// Write pass: writes `bytes` at output offset `at`.
    fn overwrite(&mut self, at: usize, bytes: &[u8]) -> Option<()> {
        if self.pass == Pass::Write {
            self.buf
                .get_mut(at..at + bytes.len())?
                .copy_from_slice(bytes);
        }
        Some(())
    }

    /// Appends `bytes` to the output (counts them in the measure pass).
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        self.overwrite(self.written, bytes)?;
        self.written += bytes.len();
        Some(())
    }
}

/// An unpadded RTCP header for a packet of `len` bytes (a multiple of 4,
/// at least the header), `None` if the length field cannot say it.
fn rtcp_header(count: u8, packet_type: u8, len: usize) -> Option<[u8; 4]> {
    let words = u16::try_from((len / 4).checked_sub(1)?).ok()?;
    let [high, low] = words.to_be_bytes();
    Some([VERSION << 6 | (count & 0x1f), packet_type, high, low])
}

#[cfg(test)]
#[path = "rtcp_tests.rs"]
mod tests;
