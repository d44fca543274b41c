//! One device's 32-word holding-register table and the Modbus access rules
//! that do not depend on the device: quantity limits, address range, and the
//! read-only sensor block (see `endotower_actors::registers`).

use endotower_actors::registers::{writable, TABLE_LEN};
use tokio_modbus::ExceptionCode;

/// Most registers one FC03/FC04/FC23 read may ask for.
pub(crate) const MAX_READ: u16 = 125;
/// Most registers one FC16 write may carry.
pub(crate) const MAX_WRITE: u16 = 123;
/// Most registers the write half of one FC23 may carry.
pub(crate) const MAX_RW_WRITE: u16 = 121;

/// The register table: sensor words 0..=15, control 16..=23, safety 24..=31.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RegisterTable {
    words: [u16; TABLE_LEN as usize],
}

impl RegisterTable {
    /// Word at `addr` (0 outside the table).
    pub(crate) fn get(&self, addr: u16) -> u16 {
        self.words.get(usize::from(addr)).copied().unwrap_or(0)
    }

    /// Device-side store, any address (ignored outside the table).
    pub(crate) fn set(&mut self, addr: u16, value: u16) {
        if let Some(w) = self.words.get_mut(usize::from(addr)) {
            *w = value;
        }
    }

    /// Validate a read of `qty` words at `addr`: quantity first (IllegalDataValue),
    /// then range (IllegalDataAddress), as the Modbus spec orders them.
    pub(crate) fn check_read(&self, addr: u16, qty: u16) -> Result<(), ExceptionCode> {
        if qty == 0 || qty > MAX_READ {
            return Err(ExceptionCode::IllegalDataValue);
        }
        in_table(addr, qty)
    }

    /// Bus-master read.
    pub(crate) fn read(&self, addr: u16, qty: u16) -> Result<Vec<u16>, ExceptionCode> {
        self.check_read(addr, qty)?;
        let start = usize::from(addr);
        Ok(self.words[start..start + usize::from(qty)].to_vec())
    }

    /// Validate a bus-master write of `values` at `addr` (at most `max_qty`
    /// words): every address must be in the control or safety block and every
    /// value must pass the device's `value_ok(addr, value)`.
    pub(crate) fn check_write(
        &self,
        addr: u16,
        values: &[u16],
        max_qty: u16,
        value_ok: impl Fn(u16, u16) -> bool,
    ) -> Result<(), ExceptionCode> {
        let qty = u16::try_from(values.len()).map_err(|_| ExceptionCode::IllegalDataValue)?;
        if qty == 0 || qty > max_qty {
            return Err(ExceptionCode::IllegalDataValue);
        }
        in_table(addr, qty)?;
        if !(addr..addr + qty).all(writable) {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        if !(addr..).zip(values).all(|(a, &v)| value_ok(a, v)) {
            return Err(ExceptionCode::IllegalDataValue);
        }
        Ok(())
    }

    /// Store a write that [`check_write`](Self::check_write) accepted.
    pub(crate) fn write(&mut self, addr: u16, values: &[u16]) {
        for (a, &v) in (addr..).zip(values) {
            self.set(a, v);
        }
    }
}

fn in_table(addr: u16, qty: u16) -> Result<(), ExceptionCode> {
    if u32::from(addr) + u32::from(qty) <= u32::from(TABLE_LEN) {
        Ok(())
    } else {
        Err(ExceptionCode::IllegalDataAddress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_beyond_the_table_or_of_bad_quantity_are_rejected() {
        let t = RegisterTable::default();
        assert_eq!(t.read(0, 32).map(|v| v.len()), Ok(32));
        assert_eq!(t.read(31, 2), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(t.read(0xFFFF, 1), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(t.read(0, 0), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(t.read(0, 126), Err(ExceptionCode::IllegalDataValue));
    }

    #[test]
    fn writes_to_sensor_words_are_rejected_whole() {
        let mut t = RegisterTable::default();
        let any = |_, _| true;
        assert_eq!(t.check_write(3, &[1], MAX_WRITE, any), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(t.check_write(15, &[1, 1], MAX_WRITE, any), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(t.check_write(31, &[1, 1], MAX_WRITE, any), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(t.check_write(16, &[1, 2000], MAX_WRITE, |_, v| v <= 1000), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(t.check_write(16, &[1, 2], MAX_WRITE, any), Ok(()));
        t.write(16, &[1, 2]);
        assert_eq!((t.get(16), t.get(17)), (1, 2));
    }
}
