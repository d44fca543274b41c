//! The identity of each simulated device: its name and default Modbus unit id.

use endotower_actors::registers;
use serde::{Deserialize, Serialize};

/// A simulated tower device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    Insufflator,
    Light,
    Camera,
    Pedal,
}

impl Device {
    pub const ALL: [Device; 4] = [Device::Insufflator, Device::Light, Device::Camera, Device::Pedal];

    /// Unit id from the register map; a TCP endpoint answers this id (and 0, 255).
    pub fn default_unit(self) -> u8 {
        match self {
            Device::Insufflator => registers::insufflator::UNIT,
            Device::Light => registers::light::UNIT,
            Device::Camera => registers::camera::UNIT,
            Device::Pedal => registers::pedal::UNIT,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Device::Insufflator => "insufflator",
            Device::Light => "light",
            Device::Camera => "camera",
            Device::Pedal => "pedal",
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
