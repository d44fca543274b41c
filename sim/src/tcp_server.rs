//! The simulators' Modbus TCP server, written out so that it follows the
//! device interface contract (`docs/device-interface.md`) to the byte:
//! a malformed request gets the exception the Modbus specification names
//! instead of a closed connection:
//!
//! - unknown function code: 0x01 illegal function;
//! - a PDU whose length does not fit its function, or an FC 16 / FC 23
//!   whose byte count is not twice its quantity: 0x03 illegal data value;
//! - addresses and values: as the device's register table decides (0x02,
//!   0x03).
//!
//! Only a broken MBAP header (protocol id not 0, length 0 or over 254)
//! closes the connection: the stream cannot be framed after it. A request
//! for a unit id the device does not answer to gets no reply, as on a bus.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_modbus::{ExceptionCode, Request, Response};

use crate::modbus_service::{answer, unit_accepted};
use crate::sim_device::DynDevice;

/// MBAP header length, unit id included.
const HEADER: usize = 7;
/// Largest PDU (Modbus application protocol spec).
const MAX_PDU: usize = 253;

/// A request PDU parsed, or the exception code it earns.
fn parse(pdu: &[u8]) -> Result<Request<'static>, u8> {
    const ILLEGAL_FUNCTION: u8 = 0x01;
    const ILLEGAL_DATA_VALUE: u8 = 0x03;
    let word = |i: usize| u16::from_be_bytes([pdu[i], pdu[i + 1]]);
    let words = |from: usize, n: usize| (0..n).map(|k| word(from + 2 * k)).collect::<Vec<u16>>();
    let fc = *pdu.first().ok_or(ILLEGAL_FUNCTION)?;
    let need = |len: usize| if pdu.len() == len { Ok(()) } else { Err(ILLEGAL_DATA_VALUE) };
    Ok(match fc {
        0x03 => {
            need(5)?;
            Request::ReadHoldingRegisters(word(1), word(3))
        }
        0x04 => {
            need(5)?;
            Request::ReadInputRegisters(word(1), word(3))
        }
        0x06 => {
            need(5)?;
            Request::WriteSingleRegister(word(1), word(3))
        }
        // A write block: quantity at `at`, byte count at `at + 2`, values after.
        0x10 | 0x17 => {
            let at = if fc == 0x10 { 3 } else { 7 };
            if pdu.len() < at + 3 {
                return Err(ILLEGAL_DATA_VALUE);
            }
            let (qty, count) = (usize::from(word(at)), usize::from(pdu[at + 2]));
            if count != 2 * qty || pdu.len() != at + 3 + count {
                return Err(ILLEGAL_DATA_VALUE);
            }
            let values = words(at + 3, qty).into();
            if fc == 0x10 {
                Request::WriteMultipleRegisters(word(1), values)
            } else {
                Request::ReadWriteMultipleRegisters(word(1), word(3), word(5), values)
            }
        }
        _ => return Err(ILLEGAL_FUNCTION),
    })
}

/// A response PDU.
fn encode(fc: u8, reply: Result<Response, u8>, out: &mut Vec<u8>) {
    let regs = |out: &mut Vec<u8>, fc: u8, v: &[u16]| {
        out.push(fc);
        out.push((2 * v.len()) as u8);
        for w in v {
            out.extend_from_slice(&w.to_be_bytes());
        }
    };
    match reply {
        Ok(Response::ReadHoldingRegisters(v)) | Ok(Response::ReadInputRegisters(v)) | Ok(Response::ReadWriteMultipleRegisters(v)) => {
            regs(out, fc, &v)
        }
        Ok(Response::WriteSingleRegister(a, v)) | Ok(Response::WriteMultipleRegisters(a, v)) => {
            out.push(fc);
            out.extend_from_slice(&a.to_be_bytes());
            out.extend_from_slice(&v.to_be_bytes());
        }
        Ok(_) => {
            out.push(fc | 0x80);
            out.push(0x04);
        }
        Err(code) => {
            out.push(fc | 0x80);
            out.push(code);
        }
    }
}

fn exception_code(e: ExceptionCode) -> u8 {
    match e {
        ExceptionCode::IllegalFunction => 0x01,
        ExceptionCode::IllegalDataAddress => 0x02,
        ExceptionCode::IllegalDataValue => 0x03,
        _ => 0x04,
    }
}

/// Serve one connection to `dev` until the peer closes it, the link is cut,
/// or the MBAP framing breaks.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, dev: Arc<DynDevice>) -> io::Result<()> {
    let mut header = [0u8; HEADER];
    let mut pdu = vec![0u8; MAX_PDU];
    let mut out = Vec::with_capacity(HEADER + MAX_PDU);
    loop {
        match stream.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let protocol = u16::from_be_bytes([header[2], header[3]]);
        let len = usize::from(u16::from_be_bytes([header[4], header[5]]));
        if protocol != 0 || len < 2 || len > MAX_PDU + 1 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("MBAP header: protocol {protocol}, length {len}")));
        }
        let n = len - 1;
        stream.read_exact(&mut pdu[..n]).await?;
        let unit = header[6];
        if !unit_accepted(&dev, unit) {
            continue; // not addressed to this device: silence, as on a bus
        }
        let fc = pdu[0];
        let reply = match parse(&pdu[..n]) {
            Ok(request) => match answer(Arc::clone(&dev), request).await {
                Ok(Some(r)) => Ok(r),
                Ok(None) => continue, // hang or link drop: no reply
                Err(e) => Err(exception_code(e)),
            },
            Err(code) => Err(code),
        };
        out.clear();
        out.extend_from_slice(&header[..4]);
        out.extend_from_slice(&[0, 0, unit]);
        encode(fc, reply, &mut out);
        let body = (out.len() - HEADER + 1) as u16;
        out[4..6].copy_from_slice(&body.to_be_bytes());
        stream.write_all(&out).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_fc16_whose_byte_count_is_not_twice_its_quantity_is_an_illegal_data_value() {
        // Quantity 2, byte count 3.
        assert_eq!(parse(&[0x10, 0, 24, 0, 2, 3, 0, 1, 0]).unwrap_err(), 0x03);
        // Byte count right, data short.
        assert_eq!(parse(&[0x10, 0, 24, 0, 2, 4, 0, 1]).unwrap_err(), 0x03);
        assert!(matches!(parse(&[0x10, 0, 24, 0, 2, 4, 0, 1, 0, 2]), Ok(Request::WriteMultipleRegisters(24, v)) if v.as_ref() == [1, 2]));
    }

    #[test]
    fn an_unknown_function_is_illegal_and_a_short_read_is_an_illegal_data_value() {
        assert_eq!(parse(&[0x2B, 0x0E]).unwrap_err(), 0x01);
        assert_eq!(parse(&[0x03, 0, 0, 0]).unwrap_err(), 0x03);
        assert!(matches!(parse(&[0x03, 0, 0, 0, 8]), Ok(Request::ReadHoldingRegisters(0, 8))));
    }

    #[test]
    fn replies_are_framed_as_the_specification_shows() {
        let mut out = Vec::new();
        encode(0x03, Ok(Response::ReadHoldingRegisters(vec![0x1234, 1])), &mut out);
        assert_eq!(out, [0x03, 4, 0x12, 0x34, 0, 1]);
        out.clear();
        encode(0x10, Err(0x02), &mut out);
        assert_eq!(out, [0x90, 0x02]);
    }
}
