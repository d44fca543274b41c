//! Answering requests from a device's register table with its
//! communication faults applied (link drop, hang, reply delay, exception
//! replies), and the unit ids each device answers. TCP connections are
//! served by [`crate::tcp_server`]; each serial bus by a tokio-modbus RTU
//! server over [`RtuBusService`], dispatching to several devices by unit id.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};

use crate::sim_device::DynDevice;

/// TCP unit ids every device answers besides its own.
const TCP_ANY_UNIT: [u8; 2] = [0, 255];

type Reply = Result<Option<Response>, ExceptionCode>;

/// Does `dev` answer a TCP request for `unit`? Its own unit id, and 0 and
/// 255, which Modbus TCP gateways use for "the device behind this socket".
pub(crate) fn unit_accepted(dev: &DynDevice, unit: u8) -> bool {
    unit == dev.device.default_unit() || TCP_ANY_UNIT.contains(&unit)
}

/// Answer one request addressed to `dev`, as its communication faults allow.
pub(crate) async fn answer(dev: Arc<DynDevice>, request: Request<'static>) -> Reply {
    let delay = dev.lock().faults().reply_delay;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut sim = dev.lock();
    let faults = sim.faults();
    if faults.link_drop || faults.hang {
        return Ok(None);
    }
    if faults.exception_replies {
        return Err(ExceptionCode::ServerDeviceFailure);
    }
    sim.handle(&request).map(Some)
}

/// Several devices sharing one serial line; unknown unit ids get no reply.
pub(crate) struct RtuBusService {
    units: Vec<(u8, Arc<DynDevice>)>,
}

impl RtuBusService {
    pub(crate) fn new(units: Vec<(u8, Arc<DynDevice>)>) -> Self {
        Self { units }
    }
}

impl Service for RtuBusService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = BoxFuture<'static, Reply>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let dev = self.units.iter().find(|(unit, _)| *unit == req.slave).map(|(_, d)| Arc::clone(d));
        Box::pin(async move {
            match dev {
                Some(dev) => answer(dev, req.request).await,
                None => Ok(None),
            }
        })
    }
}
