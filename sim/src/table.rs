//! One device's 32-word holding-register table and the Modbus access rules
//! that do not depend on the device: quantity limits, address range, and the
//! read-only sensor block (see `endotower_actors::registers`).

use endotower_actors::registers::{spec, RegisterSpec, TABLE_LEN};
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
    /// words) against the device's register `map`: every address must be a
    /// documented writable register (else exception 0x02, illegal data
    /// address) and every value inside its range (else 0x03, illegal data
    /// value). Nothing of a rejected write is applied.
    pub(crate) fn check_write(&self, addr: u16, values: &[u16], max_qty: u16, map: &'static [RegisterSpec]) -> Result<(), ExceptionCode> {
        let qty = u16::try_from(values.len()).map_err(|_| ExceptionCode::IllegalDataValue)?;
        if qty == 0 || qty > max_qty {
            return Err(ExceptionCode::IllegalDataValue);
        }
        in_table(addr, qty)?;
        let specs: Vec<Option<&RegisterSpec>> = (addr..addr + qty).map(|a| spec(map, a)).collect();
        if specs.iter().any(|s| s.is_none_or(|s| s.access == endotower_actors::registers::Access::Read)) {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        if !specs.iter().zip(values).all(|(s, &v)| s.is_some_and(|s| s.accepts(v))) {
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
    fn writes_to_sensor_or_undocumented_words_and_out_of_range_values_are_rejected_whole() {
        use endotower_actors::registers::insufflator::MAP;
        let mut t = RegisterTable::default();
        assert_eq!(t.check_write(3, &[1], MAX_WRITE, MAP), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(t.check_write(15, &[1, 1], MAX_WRITE, MAP), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(t.check_write(31, &[1, 1], MAX_WRITE, MAP), Err(ExceptionCode::IllegalDataAddress));
        // 19..=23 are in the control block but document nothing.
        assert_eq!(t.check_write(18, &[0, 5], MAX_WRITE, MAP), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(t.check_write(26, &[1], MAX_WRITE, MAP), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(t.check_write(16, &[2000, 1], MAX_WRITE, MAP), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(t.check_write(24, &[4, 1], MAX_WRITE, MAP), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(t.check_write(16, &[500, 1], MAX_WRITE, MAP), Ok(()));
        t.write(16, &[500, 1]);
        assert_eq!((t.get(16), t.get(17)), (500, 1));
    }
}
