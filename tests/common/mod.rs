//! Shared helpers of the integration tests: a tower config on free loopback
//! ports with a unique id, and polling waits with generous limits (tests
//! assert what happens, never how fast).

#![allow(dead_code)]

pub mod dicom_peers;
pub mod inference_server;
pub mod mqtt;

use endotower::tower_config::TowerConfig;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The shipped config, with a unique tower id and every device on port 0.
pub fn test_config() -> TowerConfig {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/tower.toml")).unwrap();
    let mut cfg = TowerConfig::from_toml(&text).unwrap();
    cfg.tower.id = format!("t{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    cfg.tower.status_interval_ms = 500;
    // Several towers share two cores here: no thread of theirs gets a
    // real-time class, so none can starve another tower's safety island.
    cfg.safety.realtime_priority = false;
    cfg.video.realtime_priority = false;
    // Telemetry (an embedded broker, a journal directory) only where a test asks for it.
    cfg.telemetry.enabled = false;
    // No compositing: three towers per test binary on two cores would spend
    // their time drawing overlays (tests/display_golden.rs and
    // tests/window_smoke.rs cover the display).
    cfg.video.display.renderer = endotower_actors::display::config::RendererChoice::None;
    cfg.use_free_loopback_ports();
    cfg
}

/// Poll `f` every 10 ms until it holds or `limit` passes.
pub async fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
}
