//! The compositor chosen by config, behind one interface.

use super::config::RendererChoice;
use super::cpu::CpuCompositor;
use super::gpu::GpuCompositor;
use super::scene::Scene;
use super::DisplayError;
use crate::video::frame::Frame;

// Both boxed: each holds a font system and caches, so the enum stays small.
pub enum Renderer {
    Cpu(Box<CpuCompositor>),
    Gpu(Box<GpuCompositor>),
}

impl Renderer {
    /// Open the renderer `choice` asks for. `Auto` takes wgpu only on a
    /// hardware adapter; a failing wgpu falls back to the CPU compositor, so
    /// the picture never goes dark for want of a GPU. `None` gives `None`.
    pub fn open(choice: RendererChoice) -> Option<Renderer> {
        let gpu = |allow_software: bool| match GpuCompositor::new() {
            Ok(g) if allow_software || !g.adapter().software => {
                tracing::info!(adapter = %g.adapter().name, backend = %g.adapter().backend, "display: wgpu compositor");
                Some(Renderer::Gpu(Box::new(g)))
            }
            Ok(g) => {
                tracing::info!(adapter = %g.adapter().name, "display: software adapter only; CPU compositor");
                None
            }
            Err(e) => {
                tracing::warn!("display: wgpu unavailable ({e}); CPU compositor");
                None
            }
        };
        match choice {
            RendererChoice::None => None,
            RendererChoice::Cpu => Some(Renderer::Cpu(Box::default())),
            RendererChoice::Auto => gpu(false).or_else(|| Some(Renderer::Cpu(Box::default()))),
            RendererChoice::Wgpu => gpu(true).or_else(|| Some(Renderer::Cpu(Box::default()))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Renderer::Cpu(_) => "cpu",
            Renderer::Gpu(_) => "wgpu",
        }
    }

    pub fn compose(&mut self, frame: &Frame, scene: &Scene, out: &mut Vec<u8>) -> Result<(), DisplayError> {
        match self {
            Renderer::Cpu(c) => c.compose(frame, scene, out),
            Renderer::Gpu(g) => g.compose(frame, scene, out),
        }
    }
}
