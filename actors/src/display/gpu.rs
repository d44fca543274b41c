//! The wgpu compositor: one render pass draws the camera frame (copied texel
//! for texel with `textureLoad`, no filtering), then the scene's rectangles
//! (instanced, alpha-blended), then its text (glyphon). Video texture and
//! target are `Rgba8Unorm`, not sRGB, so camera pixels pass through
//! unchanged. It draws into any texture view: its own offscreen target with
//! readback (tests, snapshots, recording) or a window surface.

use super::cpu::rgb_to_rgba;
use super::font;
use super::scene::Scene;
use super::text_cache::TextCache;
use super::DisplayError;
use crate::video::frame::Frame;
use glyphon::{Cache, Color, ColorMode, FontSystem, Resolution, SwashCache, TextArea, TextAtlas, TextBounds, TextRenderer, Viewport};
use wgpu::util::DeviceExt;

pub const FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8Unorm;

/// What the compositor runs on.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub driver: String,
    /// A CPU (software) adapter such as lavapipe.
    pub software: bool,
}

struct Sized {
    width: u32,
    height: u32,
    video: wgpu::Texture,
    bind_group: wgpu::BindGroup,
    _screen: wgpu::Buffer,
    target: wgpu::Texture,
    readback: wgpu::Buffer,
    padded_row: u32,
}

pub struct GpuCompositor {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: AdapterSummary,
    layout: wgpu::BindGroupLayout,
    video_pipeline: wgpu::RenderPipeline,
    rect_pipeline: wgpu::RenderPipeline,
    fonts: FontSystem,
    swash: SwashCache,
    texts: TextCache,
    atlas: TextAtlas,
    text_renderer: TextRenderer,
    viewport: Viewport,
    sized: Option<Sized>,
    rgba: Vec<u8>,
}

fn gpu_err(what: &str, e: impl std::fmt::Display) -> DisplayError {
    DisplayError::Gpu(format!("{what}: {e}"))
}

/// An instance on the backends `WGPU_BACKEND` names (Vulkan by default).
pub(super) fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::VULKAN);
    wgpu::Instance::new(desc)
}

/// An adapter (able to present to `surface`, when given) and its device.
pub(super) fn open_device(
    instance: &wgpu::Instance,
    surface: Option<&wgpu::Surface>,
    label: &str,
) -> Result<(wgpu::Adapter, wgpu::Device, wgpu::Queue), DisplayError> {
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        force_fallback_adapter: false,
        compatible_surface: surface,
        ..Default::default()
    }))
    .map_err(|e| {
        let what = if surface.is_some() { "no adapter can present to this window" } else { "no adapter" };
        gpu_err(
            &format!("{what} on {:?} (is mesa-vulkan-drivers installed?)", wgpu::Backends::from_env().unwrap_or(wgpu::Backends::VULKAN)),
            e,
        )
    })?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some(label),
        required_limits: wgpu::Limits::downlevel_defaults().using_resolution(adapter.limits()),
        ..Default::default()
    }))
    .map_err(|e| gpu_err("request_device", e))?;
    Ok((adapter, device, queue))
}

/// Bind group layout of a picture read texel for texel (binding 0, fragment
/// stage, `textureLoad`) and a uniform (binding 1, seen by `uniform`).
pub(super) fn picture_layout(device: &wgpu::Device, label: &str, uniform: wgpu::ShaderStages) -> wgpu::BindGroupLayout {
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(label),
        entries: &[
            wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::FRAGMENT,
                ty: wgpu::BindingType::Texture {
                    sample_type: wgpu::TextureSampleType::Float { filterable: false },
                    view_dimension: wgpu::TextureViewDimension::D2,
                    multisampled: false,
                },
                count: None,
            },
            wgpu::BindGroupLayoutEntry {
                binding: 1,
                visibility: uniform,
                ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Uniform, has_dynamic_offset: false, min_binding_size: None },
                count: None,
            },
        ],
    })
}

impl GpuCompositor {
    /// Open an adapter (backends from `WGPU_BACKEND`, Vulkan by default; no
    /// window) and build the pipelines.
    pub fn new() -> Result<GpuCompositor, DisplayError> {
        let (adapter, device, queue) = open_device(&instance(), None, "endotower display")?;
        let info = adapter.get_info();
        let summary = AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            driver: format!("{} {}", info.driver, info.driver_info),
            software: info.device_type == wgpu::DeviceType::Cpu,
        };
        Ok(Self::with_device(device, queue, summary))
    }

    fn with_device(device: wgpu::Device, queue: wgpu::Queue, adapter: AdapterSummary) -> GpuCompositor {
        let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("compositor"),
            source: wgpu::ShaderSource::Wgsl(include_str!("compositor.wgsl").into()),
        });
        let layout = picture_layout(&device, "compositor", wgpu::ShaderStages::VERTEX);
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("compositor"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = |label, vs, fs, buffers: &[Option<wgpu::VertexBufferLayout>], blend, topology| {
            device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
                label: Some(label),
                layout: Some(&pipeline_layout),
                vertex: wgpu::VertexState { module: &shader, entry_point: Some(vs), compilation_options: Default::default(), buffers },
                primitive: wgpu::PrimitiveState { topology, ..Default::default() },
                depth_stencil: None,
                multisample: wgpu::MultisampleState::default(),
                fragment: Some(wgpu::FragmentState {
                    module: &shader,
                    entry_point: Some(fs),
                    compilation_options: Default::default(),
                    targets: &[Some(wgpu::ColorTargetState { format: FORMAT, blend, write_mask: wgpu::ColorWrites::ALL })],
                }),
                multiview_mask: None,
                cache: None,
            })
        };
        let video_pipeline = pipeline("video", "vs_video", "fs_video", &[], None, wgpu::PrimitiveTopology::TriangleList);
        let rect_instances = wgpu::VertexBufferLayout {
            array_stride: 20,
            step_mode: wgpu::VertexStepMode::Instance,
            attributes: &wgpu::vertex_attr_array![0 => Float32x4, 1 => Unorm8x4],
        };
        let rect_pipeline = pipeline(
            "rects",
            "vs_rect",
            "fs_rect",
            &[Some(rect_instances)],
            Some(wgpu::BlendState::ALPHA_BLENDING),
            wgpu::PrimitiveTopology::TriangleStrip,
        );
        let cache = Cache::new(&device);
        let mut atlas = TextAtlas::with_color_mode(&device, &queue, &cache, FORMAT, ColorMode::Web);
        let text_renderer = TextRenderer::new(&mut atlas, &device, wgpu::MultisampleState::default(), None);
        let viewport = Viewport::new(&device, &cache);
        GpuCompositor {
            device,
            queue,
            adapter,
            layout,
            video_pipeline,
            rect_pipeline,
            fonts: font::font_system(),
            swash: SwashCache::new(),
            texts: TextCache::default(),
            atlas,
            text_renderer,
            viewport,
            sized: None,
            rgba: Vec::new(),
        }
    }

    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    fn resize(&mut self, width: u32, height: u32) {
        if self.sized.as_ref().is_some_and(|s| (s.width, s.height) == (width, height)) {
            return;
        }
        let size = wgpu::Extent3d { width, height, depth_or_array_layers: 1 };
        let texture = |label, usage| {
            self.device.create_texture(&wgpu::TextureDescriptor {
                label: Some(label),
                size,
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: FORMAT,
                usage,
                view_formats: &[],
            })
        };
        let video = texture("video", wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST);
        let target = texture("target", wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC);
        let screen = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("screen"),
            contents: &[width as f32, height as f32, 0.0, 0.0].iter().flat_map(|v: &f32| v.to_le_bytes()).collect::<Vec<u8>>(),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("compositor"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::TextureView(&video.create_view(&Default::default())) },
                wgpu::BindGroupEntry { binding: 1, resource: screen.as_entire_binding() },
            ],
        });
        let padded_row = (width * 4).div_ceil(256) * 256;
        let readback = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: u64::from(padded_row) * u64::from(height),
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
            mapped_at_creation: false,
        });
        self.sized = Some(Sized { width, height, video, bind_group, _screen: screen, target, readback, padded_row });
    }

    /// Draw `frame` and `scene` into `view` (an `Rgba8Unorm` texture of the
    /// frame's size) and submit.
    pub fn render_into(&mut self, frame: &Frame, scene: &Scene, view: &wgpu::TextureView) -> Result<(), DisplayError> {
        if (frame.width, frame.height) != (scene.width, scene.height) {
            return Err(DisplayError::FrameMismatch { frame: (frame.width, frame.height), scene: (scene.width, scene.height) });
        }
        self.resize(frame.width, frame.height);
        let Some(sized) = self.sized.as_ref() else { return Err(DisplayError::Gpu("no target".into())) };
        let (w, h) = (frame.width, frame.height);
        rgb_to_rgba(frame, &mut self.rgba);
        self.queue.write_texture(
            wgpu::TexelCopyTextureInfo {
                texture: &sized.video,
                mip_level: 0,
                origin: wgpu::Origin3d::ZERO,
                aspect: wgpu::TextureAspect::All,
            },
            &self.rgba,
            wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(w * 4), rows_per_image: Some(h) },
            wgpu::Extent3d { width: w, height: h, depth_or_array_layers: 1 },
        );

        let mut instances: Vec<u8> = Vec::with_capacity(scene.fills.len() * 20);
        for f in &scene.fills {
            let Some(r) = f.rect.clip(w, h) else { continue };
            for v in [r.x as f32, r.y as f32, r.w as f32, r.h as f32] {
                instances.extend_from_slice(&v.to_le_bytes());
            }
            instances.extend_from_slice(&f.colour);
        }
        let rect_count = (instances.len() / 20) as u32;
        let rect_buffer = (rect_count > 0).then(|| {
            self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("rects"),
                contents: &instances,
                usage: wgpu::BufferUsages::VERTEX,
            })
        });

        self.texts.prepare(&mut self.fonts, &scene.texts);
        let areas: Vec<TextArea> = scene
            .texts
            .iter()
            .filter_map(|t| {
                let clip = t.clip.clip(w, h)?;
                let [r, g, b, a] = t.colour;
                Some(TextArea {
                    buffer: self.texts.get(t)?,
                    left: t.x as f32,
                    top: t.y as f32,
                    scale: 1.0,
                    bounds: TextBounds { left: clip.x, top: clip.y, right: clip.x + clip.w, bottom: clip.y + clip.h },
                    default_color: Color::rgba(r, g, b, a),
                    custom_glyphs: &[],
                })
            })
            .collect();
        self.viewport.update(&self.queue, Resolution { width: w, height: h });
        self.text_renderer
            .prepare(&self.device, &self.queue, &mut self.fonts, &mut self.atlas, &self.viewport, areas, &mut self.swash)
            .map_err(|e| gpu_err("text prepare", e))?;

        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("compose") });
        {
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("compose"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view,
                    depth_slice: None,
                    resolve_target: None,
                    ops: wgpu::Operations { load: wgpu::LoadOp::Clear(wgpu::Color::BLACK), store: wgpu::StoreOp::Store },
                })],
                ..Default::default()
            });
            pass.set_bind_group(0, &sized.bind_group, &[]);
            pass.set_pipeline(&self.video_pipeline);
            pass.draw(0..3, 0..1);
            if let Some(buf) = &rect_buffer {
                pass.set_pipeline(&self.rect_pipeline);
                pass.set_vertex_buffer(0, buf.slice(..));
                pass.draw(0..4, 0..rect_count);
            }
            self.text_renderer.render(&self.atlas, &self.viewport, &mut pass).map_err(|e| gpu_err("text render", e))?;
        }
        self.queue.submit([encoder.finish()]);
        self.atlas.trim();
        Ok(())
    }

    /// Compose into the offscreen target and read it back as tight RGBA8.
    pub fn compose(&mut self, frame: &Frame, scene: &Scene, out: &mut Vec<u8>) -> Result<(), DisplayError> {
        self.resize(frame.width, frame.height);
        let view = match self.sized.as_ref() {
            Some(s) => s.target.create_view(&Default::default()),
            None => return Err(DisplayError::Gpu("no target".into())),
        };
        self.render_into(frame, scene, &view)?;
        let Some(s) = self.sized.as_ref() else { return Err(DisplayError::Gpu("no target".into())) };
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
        encoder.copy_texture_to_buffer(
            wgpu::TexelCopyTextureInfo { texture: &s.target, mip_level: 0, origin: wgpu::Origin3d::ZERO, aspect: wgpu::TextureAspect::All },
            wgpu::TexelCopyBufferInfo {
                buffer: &s.readback,
                layout: wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(s.padded_row), rows_per_image: Some(s.height) },
            },
            wgpu::Extent3d { width: s.width, height: s.height, depth_or_array_layers: 1 },
        );
        self.queue.submit([encoder.finish()]);
        let slice = s.readback.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device.poll(wgpu::PollType::Wait { submission_index: None, timeout: None }).map_err(|e| gpu_err("poll", e))?;
        rx.recv().map_err(|e| gpu_err("map", e))?.map_err(|e| gpu_err("map", e))?;
        {
            let data = slice.get_mapped_range().map_err(|e| gpu_err("mapped range", e))?;
            out.clear();
            let row = s.width as usize * 4;
            for y in 0..s.height as usize {
                let start = y * s.padded_row as usize;
                out.extend_from_slice(&data[start..start + row]);
            }
        }
        s.readback.unmap();
        Ok(())
    }
}
