//! The two Modbus requests the island makes, framed for TCP (MBAP header) and
//! RTU (CRC-16), and the checks on their replies. Pure functions on byte
//! buffers the caller owns: no allocation, no I/O.
//!
//! - FC 0x03 read holding registers: the sensor block of a device.
//! - FC 0x10 write multiple registers: the safety word and the heartbeat.
//!
//! A reply is accepted only if it answers exactly the request sent: same
//! transaction id and unit (TCP), same unit (RTU, CRC checked), same
//! function code, the expected byte count or echoed address and quantity.

/// Longest frame handled: MBAP header (7) + PDU (253).
pub const MAX_FRAME: usize = 260;
/// Most registers one read may ask for (Modbus limit).
pub const MAX_READ: u16 = 125;
/// Most registers one write may carry here (the island writes 2).
pub const MAX_WRITE: usize = 8;

const FC_READ_HOLDING: u8 = 0x03;
const FC_WRITE_MULTIPLE: u8 = 0x10;

/// Why a reply was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("device answered with Modbus exception 0x{0:02x}")]
    Exception(u8),
    #[error("reply for transaction {got}, expected {expected}")]
    Transaction { expected: u16, got: u16 },
    #[error("reply from unit {got}, expected {expected}")]
    Unit { expected: u8, got: u8 },
    #[error("reply function 0x{got:02x}, expected 0x{expected:02x}")]
    Function { expected: u8, got: u8 },
    #[error("reply byte {at} is 0x{got:02x}, expected 0x{expected:02x}")]
    Byte { at: usize, expected: u8, got: u8 },
    #[error("reply of {got} bytes, expected {expected}")]
    Length { expected: usize, got: usize },
    #[error("CRC 0x{got:04x}, expected 0x{expected:04x}")]
    Crc { expected: u16, got: u16 },
    #[error("request too large for one frame")]
    TooLarge,
}

/// A request the island sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    Read { addr: u16, qty: u16 },
    Write { addr: u16, values: &'a [u16] },
}

impl Request<'_> {
    fn function(&self) -> u8 {
        match self {
            Request::Read { .. } => FC_READ_HOLDING,
            Request::Write { .. } => FC_WRITE_MULTIPLE,
        }
    }

    /// Write the PDU into `out`; returns its length.
    pub fn pdu(&self, out: &mut [u8]) -> Result<usize, FrameError> {
        match *self {
            Request::Read { addr, qty } => {
                if qty == 0 || qty > MAX_READ {
                    return Err(FrameError::TooLarge);
                }
                out[0] = FC_READ_HOLDING;
                out[1..3].copy_from_slice(&addr.to_be_bytes());
                out[3..5].copy_from_slice(&qty.to_be_bytes());
                Ok(5)
            }
            Request::Write { addr, values } => {
                if values.is_empty() || values.len() > MAX_WRITE {
                    return Err(FrameError::TooLarge);
                }
                out[0] = FC_WRITE_MULTIPLE;
                out[1..3].copy_from_slice(&addr.to_be_bytes());
                out[3..5].copy_from_slice(&(values.len() as u16).to_be_bytes());
                out[5] = (values.len() * 2) as u8;
                for (i, v) in values.iter().enumerate() {
                    out[6 + 2 * i..8 + 2 * i].copy_from_slice(&v.to_be_bytes());
                }
                Ok(6 + 2 * values.len())
            }
        }
    }

    /// Length of a normal reply PDU.
    fn reply_pdu_len(&self) -> usize {
        match self {
            Request::Read { qty, .. } => 2 + 2 * usize::from(*qty),
            Request::Write { .. } => 5,
        }
    }

    /// Check a reply PDU; on a read, decode the registers into `regs`.
    pub fn check_reply(&self, pdu: &[u8], regs: &mut [u16]) -> Result<(), FrameError> {
        let fc = self.function();
        let got_fc = *pdu.first().ok_or(FrameError::Length { expected: 1, got: 0 })?;
        if got_fc == fc | 0x80 {
            return Err(FrameError::Exception(pdu.get(1).copied().unwrap_or(0)));
        }
        if got_fc != fc {
            return Err(FrameError::Function { expected: fc, got: got_fc });
        }
        if pdu.len() != self.reply_pdu_len() {
            return Err(FrameError::Length { expected: self.reply_pdu_len(), got: pdu.len() });
        }
        match *self {
            Request::Read { qty, .. } => {
                let count = (2 * qty) as u8;
                if pdu[1] != count {
                    return Err(FrameError::Byte { at: 1, expected: count, got: pdu[1] });
                }
                for (i, r) in regs.iter_mut().take(usize::from(qty)).enumerate() {
                    *r = u16::from_be_bytes([pdu[2 + 2 * i], pdu[3 + 2 * i]]);
                }
            }
            Request::Write { addr, values } => {
                let mut want = [0u8; 4];
                want[..2].copy_from_slice(&addr.to_be_bytes());
                want[2..].copy_from_slice(&(values.len() as u16).to_be_bytes());
                for (i, (&w, &g)) in want.iter().zip(&pdu[1..5]).enumerate() {
                    if w != g {
                        return Err(FrameError::Byte { at: 1 + i, expected: w, got: g });
                    }
                }
            }
        }
        Ok(())
    }
}

/// Modbus TCP framing.
pub mod tcp {
    use super::*;

    /// Length of the MBAP header including the unit id.
    pub const HEADER: usize = 7;

    /// Frame `req` for `unit` with transaction id `tid`; returns the length.
    pub fn encode(req: &Request<'_>, unit: u8, tid: u16, out: &mut [u8; MAX_FRAME]) -> Result<usize, FrameError> {
        let n = req.pdu(&mut out[HEADER..])?;
        out[0..2].copy_from_slice(&tid.to_be_bytes());
        out[2..4].copy_from_slice(&[0, 0]);
        out[4..6].copy_from_slice(&((n + 1) as u16).to_be_bytes());
        out[6] = unit;
        Ok(HEADER + n)
    }

    /// From a received header: how many bytes of PDU follow.
    pub fn pdu_len(header: &[u8; HEADER]) -> Result<usize, FrameError> {
        let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
        if header[2..4] != [0, 0] {
            return Err(FrameError::Byte { at: 2, expected: 0, got: header[2] | header[3] });
        }
        if len < 2 || len > MAX_FRAME - HEADER + 1 {
            return Err(FrameError::Length { expected: 2, got: len });
        }
        Ok(len - 1)
    }

    /// Check a whole reply (header + PDU) against the request.
    pub fn check(req: &Request<'_>, unit: u8, tid: u16, header: &[u8; HEADER], pdu: &[u8], regs: &mut [u16]) -> Result<(), FrameError> {
        let got_tid = u16::from_be_bytes([header[0], header[1]]);
        if got_tid != tid {
            return Err(FrameError::Transaction { expected: tid, got: got_tid });
        }
        if header[6] != unit {
            return Err(FrameError::Unit { expected: unit, got: header[6] });
        }
        req.check_reply(pdu, regs)
    }
}

/// Modbus RTU framing.
pub mod rtu {
    use super::*;

    /// CRC-16/MODBUS.
    pub fn crc16(bytes: &[u8]) -> u16 {
        let mut crc: u16 = 0xFFFF;
        for &b in bytes {
            crc ^= u16::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xA001 } else { crc >> 1 };
            }
        }
        crc
    }

    /// Frame `req` for `unit`; returns the length.
    pub fn encode(req: &Request<'_>, unit: u8, out: &mut [u8; MAX_FRAME]) -> Result<usize, FrameError> {
        out[0] = unit;
        let n = req.pdu(&mut out[1..MAX_FRAME - 2])?;
        let crc = crc16(&out[..1 + n]);
        out[1 + n..3 + n].copy_from_slice(&crc.to_le_bytes());
        Ok(3 + n)
    }

    /// Length of the whole reply frame, known once its first two bytes (unit,
    /// function) are in: an exception is 5 bytes, a normal reply its PDU + 3.
    pub fn reply_len(req: &Request<'_>, first_two: [u8; 2]) -> usize {
        if first_two[1] & 0x80 != 0 {
            5
        } else {
            req.reply_pdu_len() + 3
        }
    }

    /// Check a whole reply frame against the request.
    pub fn check(req: &Request<'_>, unit: u8, frame: &[u8], regs: &mut [u16]) -> Result<(), FrameError> {
        if frame.len() < 5 {
            return Err(FrameError::Length { expected: 5, got: frame.len() });
        }
        let (body, crc) = frame.split_at(frame.len() - 2);
        let got = u16::from_le_bytes([crc[0], crc[1]]);
        let want = crc16(body);
        if got != want {
            return Err(FrameError::Crc { expected: want, got });
        }
        if body[0] != unit {
            return Err(FrameError::Unit { expected: unit, got: body[0] });
        }
        req.check_reply(&body[1..], regs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_modbus_reference_frame() {
        // Read 2 holding registers at 0x006B from unit 0x11: CRC 0x8776 (lo 0x76, hi 0x87).
        assert_eq!(rtu::crc16(&[0x11, 0x03, 0x00, 0x6B, 0x00, 0x03]), 0x8776);
    }

    #[test]
    fn tcp_read_round_trip_and_every_mismatch_is_named() {
        let req = Request::Read { addr: 0, qty: 2 };
        let mut out = [0u8; MAX_FRAME];
        let n = tcp::encode(&req, 1, 7, &mut out).unwrap();
        assert_eq!(&out[..n], &[0, 7, 0, 0, 0, 6, 1, 3, 0, 0, 0, 2]);
        let header = [0, 7, 0, 0, 0, 7, 1];
        assert_eq!(tcp::pdu_len(&header), Ok(6));
        let mut regs = [0u16; 2];
        tcp::check(&req, 1, 7, &header, &[3, 4, 0x04, 0xB0, 0x80, 0x00], &mut regs).unwrap();
        assert_eq!(regs, [1200, 0x8000]);
        let wrong_tid = [0, 8, 0, 0, 0, 7, 1];
        assert_eq!(
            tcp::check(&req, 1, 7, &wrong_tid, &[3, 4, 0, 0, 0, 0], &mut regs),
            Err(FrameError::Transaction { expected: 7, got: 8 })
        );
        assert_eq!(tcp::check(&req, 2, 7, &header, &[3, 4, 0, 0, 0, 0], &mut regs), Err(FrameError::Unit { expected: 2, got: 1 }));
        assert_eq!(tcp::check(&req, 1, 7, &header, &[0x83, 2], &mut regs), Err(FrameError::Exception(2)));
        assert_eq!(tcp::check(&req, 1, 7, &header, &[3, 2, 0, 0], &mut regs), Err(FrameError::Length { expected: 6, got: 4 }));
    }

    #[test]
    fn rtu_write_round_trip_and_a_corrupt_crc_is_refused() {
        let values = [3u16, 0x1234];
        let req = Request::Write { addr: 24, values: &values };
        let mut out = [0u8; MAX_FRAME];
        let n = rtu::encode(&req, 1, &mut out).unwrap();
        assert_eq!(&out[..n - 2], &[1, 0x10, 0, 24, 0, 2, 4, 0, 3, 0x12, 0x34]);
        let mut reply = [1u8, 0x10, 0, 24, 0, 2, 0, 0];
        let crc = rtu::crc16(&reply[..6]).to_le_bytes();
        reply[6..].copy_from_slice(&crc);
        assert_eq!(rtu::reply_len(&req, [1, 0x10]), 8);
        rtu::check(&req, 1, &reply, &mut []).unwrap();
        reply[3] = 25;
        assert!(matches!(rtu::check(&req, 1, &reply, &mut []), Err(FrameError::Crc { .. })));
        assert_eq!(rtu::reply_len(&req, [1, 0x90]), 5);
    }

    #[test]
    fn oversized_requests_are_refused_before_anything_is_sent() {
        let mut out = [0u8; MAX_FRAME];
        assert_eq!(tcp::encode(&Request::Read { addr: 0, qty: 126 }, 1, 1, &mut out), Err(FrameError::TooLarge));
        assert_eq!(rtu::encode(&Request::Write { addr: 0, values: &[0; 9] }, 1, &mut out), Err(FrameError::TooLarge));
    }
}
