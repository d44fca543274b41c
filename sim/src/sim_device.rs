//! A simulated device: its register table, physics model, active faults and
//! heartbeat fail-safe, and how Modbus requests act on them. [`Shared`] is the
//! handle the physics thread, the Modbus servers and the host all lock.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio_modbus::{ExceptionCode, Request, Response};
use tracing::info;

use crate::device::Device;
use crate::faults::{Fault, FaultKind, FaultSet};
use crate::heartbeat::Heartbeat;
use crate::link::LinkGate;
use crate::table::{RegisterTable, MAX_RW_WRITE, MAX_WRITE};

/// Longest integration step; longer physics steps are split into substeps, s.
const MAX_SUBSTEP_S: f64 = 0.005;
/// Cap on substeps per step (50 s of exact integration; beyond that, coarser).
const MAX_SUBSTEPS: f64 = 10_000.0;

/// The physics of one kind of device.
pub(crate) trait Model: Send + 'static {
    /// Address of the HEARTBEAT word.
    const HEARTBEAT: u16;
    /// Address of the safety word the island writes, if the device has one.
    const SAFETY_WORD: Option<u16> = None;
    /// The device's register map: what a bus master may write, and which values.
    const MAP: &'static [endotower_actors::registers::RegisterSpec];
    /// Power-on values of the control and safety words.
    fn init_table(&self, _table: &mut RegisterTable) {}
    /// Advance the physics by `dt` seconds.
    fn integrate(&mut self, dt: f64, table: &RegisterTable, faults: &FaultSet, failsafe: bool);
    /// Write the sensor block and bump SAMPLE_SEQ.
    fn publish(&mut self, table: &mut RegisterTable, faults: &FaultSet, failsafe: bool);
    /// A bus write has just been applied (`before` is the table before it).
    fn after_write(&mut self, _before: &RegisterTable, _after: &RegisterTable, _at: Instant) {}
}

/// One simulated device.
#[derive(Debug)]
pub(crate) struct SimDevice<M> {
    table: RegisterTable,
    model: M,
    faults: FaultSet,
    heartbeat: Heartbeat,
}

impl<M: Model> SimDevice<M> {
    /// A device at power-on: in fail-safe, with a first sample published.
    pub(crate) fn new(device: Device, model: M, heartbeat_timeout_s: f64) -> Self {
        let mut sim = Self {
            table: RegisterTable::default(),
            model,
            faults: FaultSet::default(),
            heartbeat: Heartbeat::new(device.name(), heartbeat_timeout_s),
        };
        sim.model.init_table(&mut sim.table);
        sim.publish_now();
        sim
    }

    pub(crate) fn model(&self) -> &M {
        &self.model
    }

    pub(crate) fn model_mut(&mut self) -> &mut M {
        &mut self.model
    }

    pub(crate) fn table(&self) -> &RegisterTable {
        &self.table
    }

    /// Publish a fresh sample now (after a state change made outside physics).
    pub(crate) fn publish_now(&mut self) {
        self.model.publish(&mut self.table, &self.faults, self.heartbeat.failsafe());
    }

    /// Apply a bus-master write of `values` at `addr`, all or nothing.
    fn write(&mut self, addr: u16, values: &[u16], max_qty: u16) -> Result<(), ExceptionCode> {
        self.table.check_write(addr, values, max_qty, M::MAP)?;
        let before = self.table.clone();
        self.table.write(addr, values);
        if let Some(word) = M::SAFETY_WORD.filter(|_| self.faults.safety_write_ignored) {
            // Acknowledged, not applied: the device keeps its old safety word.
            self.table.set(word, before.get(word));
        }
        let at = Instant::now();
        if self.table.get(M::HEARTBEAT) != before.get(M::HEARTBEAT) {
            self.heartbeat.beat();
        }
        self.model.after_write(&before, &self.table, at);
        Ok(())
    }
}

/// What the servers, the physics thread and the host need from any device.
pub(crate) trait DeviceCore: Send {
    /// Answer one request from the register table (no comms faults here).
    fn handle(&mut self, request: &Request<'_>) -> Result<Response, ExceptionCode>;
    /// Advance physics and the heartbeat watchdog by `dt` seconds, then publish.
    fn step(&mut self, dt: f64);
    fn failsafe(&self) -> bool;
    /// Fail-safe entries after a heartbeat timeout, since boot.
    fn failsafe_entries(&self) -> u64;
    fn faults(&self) -> &FaultSet;
    fn faults_mut(&mut self) -> &mut FaultSet;
}

impl<M: Model> DeviceCore for SimDevice<M> {
    fn handle(&mut self, request: &Request<'_>) -> Result<Response, ExceptionCode> {
        use Request as R;
        match request {
            R::ReadHoldingRegisters(addr, qty) => self.table.read(*addr, *qty).map(Response::ReadHoldingRegisters),
            R::ReadInputRegisters(addr, qty) => self.table.read(*addr, *qty).map(Response::ReadInputRegisters),
            R::WriteSingleRegister(addr, value) => {
                self.write(*addr, &[*value], 1)?;
                Ok(Response::WriteSingleRegister(*addr, *value))
            }
            R::WriteMultipleRegisters(addr, values) => {
                self.write(*addr, values, MAX_WRITE)?;
                let qty = u16::try_from(values.len()).unwrap_or(u16::MAX);
                Ok(Response::WriteMultipleRegisters(*addr, qty))
            }
            R::ReadWriteMultipleRegisters(read_addr, read_qty, write_addr, values) => {
                // Validate the read before writing: a rejected request changes nothing.
                self.table.check_read(*read_addr, *read_qty)?;
                self.write(*write_addr, values, MAX_RW_WRITE)?;
                self.table.read(*read_addr, *read_qty).map(Response::ReadWriteMultipleRegisters)
            }
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }

    fn step(&mut self, dt: f64) {
        let dt = if dt.is_finite() { dt.max(0.0) } else { 0.0 };
        self.heartbeat.tick(dt);
        let failsafe = self.heartbeat.failsafe();
        let n = (dt / MAX_SUBSTEP_S).ceil().clamp(1.0, MAX_SUBSTEPS);
        let h = dt / n;
        for _ in 0..n as u32 {
            self.model.integrate(h, &self.table, &self.faults, failsafe);
        }
        self.model.publish(&mut self.table, &self.faults, failsafe);
    }

    fn failsafe_entries(&self) -> u64 {
        self.heartbeat.entries()
    }

    fn failsafe(&self) -> bool {
        self.heartbeat.failsafe()
    }

    fn faults(&self) -> &FaultSet {
        &self.faults
    }

    fn faults_mut(&mut self) -> &mut FaultSet {
        &mut self.faults
    }
}

/// A device as shared between threads, with the gate of its TCP links.
#[derive(Debug)]
pub(crate) struct Shared<T: ?Sized> {
    pub(crate) device: Device,
    pub(crate) link: LinkGate,
    sim: Mutex<T>,
}

/// A shared device of any kind.
pub(crate) type DynDevice = Shared<dyn DeviceCore>;

impl<T> Shared<T> {
    pub(crate) fn new(device: Device, sim: T) -> Self {
        Self { device, link: LinkGate::default(), sim: Mutex::new(sim) }
    }
}

impl<T: ?Sized + DeviceCore> Shared<T> {
    /// Lock the device (a panic elsewhere never makes it unusable).
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.sim.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_fault(&self, fault: Fault) {
        info!(device = self.device.name(), ?fault, "fault set");
        let link_drop = fault == Fault::LinkDrop;
        self.lock().faults_mut().set(fault);
        if link_drop {
            self.link.cut();
        }
    }

    pub(crate) fn clear_fault(&self, kind: FaultKind) {
        info!(device = self.device.name(), ?kind, "fault cleared");
        self.lock().faults_mut().clear(kind);
        if kind == FaultKind::LinkDrop {
            self.link.restore();
        }
    }

    pub(crate) fn clear_all_faults(&self) {
        info!(device = self.device.name(), "all faults cleared");
        *self.lock().faults_mut() = FaultSet::default();
        self.link.restore();
    }
}

/// A device stepped by hand with a fixed dt, for deterministic tests.
#[cfg(test)]
pub(crate) mod bench {
    use super::*;

    /// Fixed physics step of the bench, s.
    pub(crate) const DT: f64 = 0.001;

    pub(crate) struct Bench<M> {
        pub(crate) sim: SimDevice<M>,
        beat: u16,
    }

    impl<M: Model> Bench<M> {
        /// A device at power-on with the default 300 ms heartbeat timeout.
        pub(crate) fn new(device: Device, model: M) -> Self {
            Self { sim: SimDevice::new(device, model, 0.3), beat: 0 }
        }

        /// Bus-master FC06 write that must succeed.
        pub(crate) fn write(&mut self, addr: u16, value: u16) {
            self.try_write(addr, value).unwrap();
        }

        pub(crate) fn try_write(&mut self, addr: u16, value: u16) -> Result<(), ExceptionCode> {
            self.sim.handle(&Request::WriteSingleRegister(addr, value)).map(|_| ())
        }

        /// Change the HEARTBEAT word.
        pub(crate) fn beat(&mut self) {
            self.beat = self.beat.wrapping_add(1);
            self.write(M::HEARTBEAT, self.beat);
        }

        /// Run `seconds` of physics in 1 ms steps, beating every 50 ms if `heartbeat`.
        pub(crate) fn run(&mut self, seconds: f64, heartbeat: bool) {
            let steps = (seconds / DT).round() as u64;
            for i in 0..steps {
                if heartbeat && i % 50 == 0 {
                    self.beat();
                }
                self.sim.step(DT);
            }
        }

        pub(crate) fn reg(&self, addr: u16) -> u16 {
            self.sim.table().get(addr)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use endotower_actors::registers::{insufflator as reg, light, TABLE_LEN};

    use super::bench::Bench;
    use super::*;
    use crate::config::InsufflatorModel;
    use crate::insufflator::Insufflator;
    use crate::light::Light;
    use crate::rng::Rng;

    fn insufflator() -> Bench<Insufflator> {
        Bench::new(Device::Insufflator, Insufflator::new(InsufflatorModel::default(), Rng::new(1, 0)))
    }

    #[test]
    fn writes_to_sensor_addresses_are_rejected_with_illegal_data_address() {
        let mut b = insufflator();
        for addr in 0..16 {
            assert_eq!(b.try_write(addr, 1), Err(ExceptionCode::IllegalDataAddress), "addr {addr}");
        }
        let multi = Request::WriteMultipleRegisters(14, Cow::Owned(vec![0, 0, 0]));
        assert_eq!(b.sim.handle(&multi), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(b.try_write(TABLE_LEN, 0), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(b.try_write(reg::PWM_DUTY, 1000), Ok(()));
        assert_eq!(b.try_write(reg::HEARTBEAT, 7), Ok(()));
    }

    #[test]
    fn an_ignored_safety_word_is_acknowledged_but_not_applied_while_the_heartbeat_is() {
        let mut b = insufflator();
        b.sim.faults_mut().set(Fault::SafetyWriteIgnored);
        // The island's write: SAFETY_CMD and HEARTBEAT in one request.
        let island = Request::WriteMultipleRegisters(reg::SAFETY_CMD, Cow::Owned(vec![3, 42]));
        assert!(b.sim.handle(&island).is_ok(), "the write is acknowledged");
        b.sim.step(0.001);
        assert_eq!((b.reg(reg::SAFETY_CMD), b.reg(reg::SAFETY_ECHO), b.reg(reg::HEARTBEAT)), (0, 0, 42));
        b.sim.faults_mut().clear(FaultKind::SafetyWriteIgnored);
        assert!(b.sim.handle(&island).is_ok());
        b.sim.step(0.001);
        assert_eq!((b.reg(reg::SAFETY_CMD), b.reg(reg::SAFETY_ECHO)), (3, 3));
    }

    #[test]
    fn out_of_range_values_are_rejected_and_change_nothing() {
        let mut b = insufflator();
        assert_eq!(b.try_write(reg::PWM_DUTY, 1001), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(b.try_write(reg::SHUTOFF_VALVE, 2), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(b.try_write(reg::RELIEF_VALVE, 2), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(b.try_write(reg::SAFETY_CMD, 4), Err(ExceptionCode::IllegalDataValue));
        // One bad value rejects the whole multi-register write.
        let multi = Request::WriteMultipleRegisters(reg::PWM_DUTY, Cow::Owned(vec![500, 1, 7]));
        assert_eq!(b.sim.handle(&multi), Err(ExceptionCode::IllegalDataValue));
        assert_eq!((b.reg(reg::PWM_DUTY), b.reg(reg::SHUTOFF_VALVE)), (0, 0));

        let mut l = Bench::new(Device::Light, Light::new(Default::default()));
        assert_eq!(l.try_write(light::DRIVE, 1001), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(l.try_write(light::FAN, 2), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(l.try_write(light::ENABLE, 2), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(l.try_write(light::SAFETY_CAP, 101), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(l.try_write(light::SAFETY_CAP, 100), Ok(()));
    }

    #[test]
    fn fc03_and_fc04_read_the_same_table_and_fc23_writes_before_reading() {
        let mut b = insufflator();
        b.write(reg::PWM_DUTY, 250);
        let holding = b.sim.handle(&Request::ReadHoldingRegisters(0, TABLE_LEN)).unwrap();
        let input = b.sim.handle(&Request::ReadInputRegisters(0, TABLE_LEN)).unwrap();
        let (Response::ReadHoldingRegisters(h), Response::ReadInputRegisters(i)) = (holding, input) else {
            panic!("wrong response kinds");
        };
        assert_eq!(h, i);
        assert_eq!(h[usize::from(reg::PWM_DUTY)], 250);

        let rw = Request::ReadWriteMultipleRegisters(reg::PWM_DUTY, 3, reg::PWM_DUTY, Cow::Owned(vec![600, 1]));
        assert_eq!(b.sim.handle(&rw), Ok(Response::ReadWriteMultipleRegisters(vec![600, 1, 0])));
        // A bad read range rejects the request before anything is written.
        let rw = Request::ReadWriteMultipleRegisters(30, 5, reg::PWM_DUTY, Cow::Owned(vec![700]));
        assert_eq!(b.sim.handle(&rw), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(b.reg(reg::PWM_DUTY), 600);
        assert_eq!(b.sim.handle(&Request::ReadCoils(0, 1)), Err(ExceptionCode::IllegalFunction));
    }

    #[test]
    fn sample_seq_increments_on_every_physics_step() {
        let mut b = insufflator();
        let before = b.reg(reg::SAMPLE_SEQ);
        b.run(0.010, false);
        assert_eq!(b.reg(reg::SAMPLE_SEQ), before.wrapping_add(10));
    }
}
